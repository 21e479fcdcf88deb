package tasktest

import (
	"bufio"
	"bytes"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/internal/progbuild"
)

var serverProgram = progbuild.New("github.com/nats-io/nats-server/v2", "nats-server")

// ServerBinary returns the path of a nats-server built from the module's
// own nats-server/v2 (the version go.mod names), building it on first
// use. [Cleanup] removes it.
func ServerBinary(t testing.TB) string {
	t.Helper()
	return serverProgram.Path(t)
}

// Server is a standalone nats-server process with JetStream on a file
// store: the external broker a host reaches with broker.Connect.
type Server struct {
	cmd  *exec.Cmd
	done chan struct{}
	// URL is its client URL.
	URL string
}

// StartServer runs nats-server with JetStream, its store in dir, listening
// on addr (from [FreeAddr]; the same addr and dir restart it on the same
// store), and waits until it accepts clients. It is killed at cleanup if
// still running; its output is logged if the test failed.
func StartServer(t testing.TB, addr, dir string) *Server {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ServerBinary(t), "-js", "-sd", dir, "-a", host, "-p", port)
	var out bytes.Buffer // read only once the process has exited
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cmd: cmd, done: make(chan struct{}), URL: "nats://" + addr}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("nats-server on %s:\n%s", addr, out.Bytes())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !serverReady(addr) {
		select {
		case <-s.done:
			t.Fatalf("tasktest: nats-server exited before it was ready:\n%s", out.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("tasktest: nats-server not ready in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

// serverReady reports whether a server at addr greets a client with INFO.
func serverReady(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(l, "INFO ")
}

// Kill sends SIGKILL and waits for the process to exit.
func (s *Server) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}
