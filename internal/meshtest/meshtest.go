// Package meshtest runs funcmesh services in separate processes for tests:
// it builds the echosvc program (once per test binary, without -race, into
// a temporary directory) and starts instances of it.
package meshtest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/internal/progbuild"
)

var program = progbuild.New("github.com/funcmesh/funcmesh/internal/meshtest/echosvc", "echosvc")

// EchoSvc returns the path of the built echosvc program, building it on
// first use. Call [Cleanup] from TestMain to remove it.
func EchoSvc(t testing.TB) string {
	t.Helper()
	return program.Path(t)
}

// Cleanup removes what EchoSvc built.
func Cleanup() { program.Cleanup() }

// Proc is a running echosvc instance.
type Proc struct {
	Cmd *exec.Cmd
	// ID is the instance's micro service ID.
	ID   string
	done chan struct{}
	err  error
	out  chan string
}

// Start runs echosvc against the NATS server at url with extra flags
// (-name, -max-concurrency, -extras) and waits until it serves. The process is
// killed at cleanup if still running.
func Start(t testing.TB, url string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(EchoSvc(t), append([]string{"-url", url}, args...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("meshtest: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("meshtest: starting echosvc: %v", err)
	}
	p := &Proc{Cmd: cmd, done: make(chan struct{}), out: make(chan string, 64)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.out <- sc.Text()
		}
		close(p.out)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.Exited()
	})
	select {
	case line, ok := <-p.out:
		id, isReady := strings.CutPrefix(line, "ready ")
		if !ok || !isReady {
			t.Fatalf("meshtest: echosvc said %q; want ready", line)
		}
		p.ID = id
	case <-time.After(30 * time.Second):
		t.Fatal("meshtest: echosvc not ready in 30s")
	}
	return p
}

// Exited is closed once the process has exited; [Proc.Err] then says how.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// Err returns the process's exit error once Exited is closed.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Terminate sends SIGTERM (a graceful stop) and returns the process's exit
// error, waiting at most 30s.
func (p *Proc) Terminate() error {
	return p.stop(syscall.SIGTERM)
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Proc) Kill() error {
	return p.stop(syscall.SIGKILL)
}

func (p *Proc) stop(sig os.Signal) error {
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		return os.ErrDeadlineExceeded
	}
}

// Lines returns what the process printed after "ready"; call it once the
// process has exited.
func (p *Proc) Lines() []string {
	<-p.done
	var lines []string
	for l := range p.out {
		lines = append(lines, l)
	}
	return lines
}
