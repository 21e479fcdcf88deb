// Package tasktest runs the taskhost program (a funcmesh host with a
// durable-task dispatcher) in separate processes, for the fault tests of
// packages tasks and events.
package tasktest

import (
	"bufio"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/internal/progbuild"
)

var program = progbuild.New("github.com/funcmesh/funcmesh/internal/tasktest/taskhost", "taskhost")

// Binary returns the path of the built taskhost, building it on first
// use. Call [Cleanup] from TestMain.
func Binary(t testing.TB) string {
	t.Helper()
	return program.Path(t)
}

// Cleanup removes what Binary and ServerBinary built.
func Cleanup() {
	program.Cleanup()
	serverProgram.Cleanup()
}

// FreeAddr returns a loopback address with a port free right now, for a
// process that must come back on the same address after a restart. The
// port is below the kernel's ephemeral range (32768 up on Linux), where
// the outgoing connections of other tests cannot take it before the
// process binds it (that happened to a cluster route port under load).
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // taken: another
		}
		addr := l.Addr().String()
		_ = l.Close()
		return addr
	}
	t.Fatal("tasktest: no free port found in 100 tries")
	return ""
}

// Host is a running taskhost.
type Host struct {
	cmd   *exec.Cmd
	done  chan struct{}
	ready chan string
	// URL is the client URL of its embedded broker ("" with -connect).
	URL string
}

// Start runs taskhost with args and waits until its dispatcher runs. It
// is killed at cleanup if still running.
func Start(t testing.TB, args ...string) *Host {
	t.Helper()
	h := Launch(t, args...)
	h.Ready(t)
	return h
}

// Launch runs taskhost with args without waiting; call [Host.Ready].
func Launch(t testing.TB, args ...string) *Host {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &Host{cmd: cmd, done: make(chan struct{}), ready: make(chan string, 1)}
	ready := h.ready
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "ready") {
				ready <- l
			}
		}
		_ = cmd.Wait()
		close(h.done)
	}()
	t.Cleanup(func() { h.Kill() })
	return h
}

// Ready waits until the host's dispatcher runs.
func (h *Host) Ready(t testing.TB) {
	t.Helper()
	select {
	case l := <-h.ready:
		if f := strings.Fields(l); len(f) > 1 {
			h.URL = f[1]
		}
	case <-h.done:
		t.Fatal("tasktest: taskhost exited before it was ready")
	case <-time.After(60 * time.Second):
		t.Fatal("tasktest: taskhost not ready in 60s")
	}
}

// Kill sends SIGKILL and waits for the process to exit.
func (h *Host) Kill() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}
