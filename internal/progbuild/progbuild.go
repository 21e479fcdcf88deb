// Package progbuild builds a test helper program once per test binary,
// without -race, into a temporary directory, for tests that run it in
// separate processes (the fault tests kill them with signals).
package progbuild

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Program is a main package to build on first use. The zero value is not
// usable; make one with [New] as a package-level variable.
type Program struct {
	pkg  string // import path of the main package
	name string // file name of the binary

	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// New returns the program of the main package pkg, built as name.
func New(pkg, name string) *Program {
	return &Program{pkg: pkg, name: name}
}

// Path returns the path of the built program, building it on first use;
// a failed build fails t. Call [Program.Cleanup] from TestMain.
func (p *Program) Path(t testing.TB) string {
	t.Helper()
	p.once.Do(func() {
		p.dir, p.err = os.MkdirTemp("", p.name+"-")
		if p.err != nil {
			return
		}
		p.path = filepath.Join(p.dir, p.name)
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		cmd := exec.Command(goBin, "build", "-o", p.path, p.pkg)
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
		p.out, p.err = cmd.CombinedOutput()
	})
	if p.err != nil {
		t.Fatalf("progbuild: building %s: %v\n%s", p.pkg, p.err, p.out)
	}
	return p.path
}

// Cleanup removes what Path built.
func (p *Program) Cleanup() {
	if p.dir != "" {
		os.RemoveAll(p.dir)
	}
}
