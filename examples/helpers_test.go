package examples_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/internal/browsertest"
	"github.com/funcmesh/funcmesh/internal/syncbuf"
)

// The Go programs the tests build, by directory under examples/.
var programs = []string{"quickstart", "existingapp", "service", "cluster", "web"}

var build struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

func TestMain(m *testing.M) {
	code := browsertest.Main(m) // m.Run, then the browser stops if one ran
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// binary returns the path of the built example program name, building all
// of them on first use (once per test binary, without -race, in one go
// build so they link in parallel).
func binary(t *testing.T, name string) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "funcmesh-examples-")
		if build.err != nil {
			return
		}
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		args := []string{"build", "-o", build.dir + string(filepath.Separator)}
		for _, p := range programs {
			args = append(args, "./"+p)
		}
		cmd := exec.Command(goBin, args...)
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		build.out, build.err = cmd.CombinedOutput()
	})
	if build.err != nil {
		t.Fatalf("building the examples: %v\n%s", build.err, build.out)
	}
	return filepath.Join(build.dir, name)
}

// proc is a program started by a test, in a process group of its own.
type proc struct {
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	lines  []string      // stdout, line by line
	notify chan struct{} // a token when lines grows or the output ends
	eof    bool

	stderr syncbuf.Buffer
	done   chan struct{}
	err    error // the exit error, once done is closed
}

// startProc runs path with args in dir ("" for the test's directory) and
// the environment env (nil: the test's, without the variables the examples
// read). At cleanup a process still running is killed with its group, and
// when the test failed its output is logged.
func startProc(t *testing.T, dir string, env []string, path string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	if env == nil {
		env = cleanEnv()
	}
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: filepath.Base(path), cmd: cmd, notify: make(chan struct{}, 1), done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() {
		p.read(stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", p.name, strings.Join(p.output(), "\n"), p.name, p.stderr.String())
		}
	})
	return p
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		p.mu.Unlock()
		p.poke()
	}
	p.mu.Lock()
	p.eof = true
	p.mu.Unlock()
	p.poke()
}

func (p *proc) poke() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *proc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine waits until the program prints a line containing s, and returns
// everything it printed up to that line.
func (p *proc) waitLine(t *testing.T, s string, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		lines, eof := p.lines, p.eof
		p.mu.Unlock()
		for i, l := range lines {
			if strings.Contains(l, s) {
				return append([]string(nil), lines[:i+1]...)
			}
		}
		if eof {
			<-p.done
			t.Fatalf("%s exited (%v) without printing %q", p.name, p.err, s)
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			t.Fatalf("%s did not print %q within %s", p.name, s, timeout)
		}
	}
}

// stop sends sig to the program and waits, at most timeout, for it to exit;
// it returns the exit error.
func (p *proc) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
	return p.wait(t, timeout)
}

// wait waits, at most timeout, for the program to exit and returns the exit
// error.
func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s", p.name, timeout)
		return nil
	}
}

// cleanEnv is the test's environment without the variables the examples
// read, so that a developer's settings cannot change what they do.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "NATS_"), strings.HasPrefix(k, "MESH_"), k == "FUNCMESH_SECRET", k == "JWT_SECRET":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// The printed text.

// printed is what an example printed for people to paste: shell variable
// assignments (TOKEN='...'), export lines, and curl commands each with the
// status the comment line before it promises.
type printed struct {
	vars    map[string]string   // NAME=value lines
	exports []map[string]string // export lines, in order
	curls   []curlCmd
	lines   []string
}

type curlCmd struct {
	line string // as printed
	want int    // the status of the "# NNN ..." comment before it
	args []string
}

var statusComment = regexp.MustCompile(`^# (\d{3}) `)
var assignment = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)

// parsePrinted reads an example's output; every curl command must follow a
// status comment and must split as a shell would.
func parsePrinted(t *testing.T, lines []string) printed {
	t.Helper()
	pr := printed{vars: map[string]string{}, lines: lines}
	want := 0
	for _, line := range lines {
		switch {
		case statusComment.MatchString(line):
			want, _ = strconv.Atoi(statusComment.FindStringSubmatch(line)[1])
		case assignment.MatchString(line):
			words, err := shellWords(line, pr.vars)
			if err != nil || len(words) != 1 {
				t.Fatalf("printed %q: not one shell assignment (%v)", line, err)
			}
			k, v, _ := strings.Cut(words[0], "=")
			pr.vars[k] = v
		case strings.HasPrefix(line, "export "):
			words, err := shellWords(line, pr.vars)
			if err != nil {
				t.Fatalf("printed %q: %v", line, err)
			}
			vars := map[string]string{}
			for _, w := range words[1:] {
				k, v, ok := strings.Cut(w, "=")
				if !ok {
					t.Fatalf("printed %q: %q is not NAME=value", line, w)
				}
				vars[k] = v
			}
			pr.exports = append(pr.exports, vars)
		case strings.HasPrefix(line, "curl "):
			if want == 0 {
				t.Fatalf("printed %q without a status comment before it", line)
			}
			words, err := shellWords(line, pr.vars)
			if err != nil {
				t.Fatalf("printed %q: %v", line, err)
			}
			pr.curls = append(pr.curls, curlCmd{line: line, want: want, args: words[1:]})
			want = 0
		}
	}
	return pr
}

// shellWords splits a command line as a POSIX shell would for the subset
// the examples print: words separated by blanks, '...' taken literally,
// "..." and bare words with $NAME and ${NAME} expanded from vars (an unset
// name is an error, so a typo in the printed text fails the test), and a
// "#" starting a word beginning a comment.
func shellWords(line string, vars map[string]string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	expand := func(s string, i int) (int, error) { // s[i] == '$'
		name := ""
		j := i + 1
		if j < len(s) && s[j] == '{' {
			end := strings.IndexByte(s[j:], '}')
			if end < 0 {
				return 0, errors.New("unterminated ${")
			}
			name, j = s[j+1:j+end], j+end+1
		} else {
			for j < len(s) && (s[j] == '_' || 'A' <= s[j] && s[j] <= 'Z' || 'a' <= s[j] && s[j] <= 'z' || '0' <= s[j] && s[j] <= '9') {
				j++
			}
			name = s[i+1 : j]
		}
		v, ok := vars[name]
		if name == "" || !ok {
			return 0, fmt.Errorf("$%s is not set", name)
		}
		w.WriteString(v)
		return j, nil
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case c == '#' && !inWord:
			return words, nil
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated '")
			}
			w.WriteString(line[i+1 : i+1+end])
			inWord, i = true, i+end+2
		case c == '"':
			i++
			for {
				if i >= len(line) {
					return nil, errors.New(`unterminated "`)
				}
				if line[i] == '"' {
					i++
					break
				}
				switch line[i] {
				case '$':
					j, err := expand(line, i)
					if err != nil {
						return nil, err
					}
					i = j
				case '\\', '`':
					return nil, fmt.Errorf("%q inside double quotes: not supported", line[i])
				default:
					w.WriteByte(line[i])
					i++
				}
			}
			inWord = true
		case c == '$':
			j, err := expand(line, i)
			if err != nil {
				return nil, err
			}
			inWord, i = true, j
		case strings.IndexByte("\\`|&;<>()*?[]{}~!", c) >= 0:
			return nil, fmt.Errorf("%q: not supported", c)
		default:
			w.WriteByte(c)
			inWord = true
			i++
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// request builds the HTTP request curl would send for the command.
func (c curlCmd) request(t *testing.T) *http.Request {
	t.Helper()
	method, url := "", ""
	var body *string
	header := http.Header{}
	args := c.args
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() string {
			if i+1 >= len(args) {
				t.Fatalf("%s: %s needs a value", c.line, a)
			}
			i++
			return args[i]
		}
		switch a {
		case "-i", "-s", "-S", "-sS", "-v":
		case "-X":
			method = next()
		case "-H":
			k, v, ok := strings.Cut(next(), ":")
			if !ok {
				t.Fatalf("%s: header %q has no colon", c.line, args[i])
			}
			header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d", "--data":
			d := next()
			body = &d
		default:
			if strings.HasPrefix(a, "-") || url != "" {
				t.Fatalf("%s: the test does not know what curl does with %q", c.line, a)
			}
			url = a
		}
	}
	if url == "" {
		t.Fatalf("%s: no URL", c.line)
	}
	if method == "" {
		method = http.MethodGet
		if body != nil {
			method = http.MethodPost
		}
	}
	var r io.Reader = http.NoBody
	if body != nil {
		r = strings.NewReader(*body)
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/x-www-form-urlencoded") // as curl -d does
		}
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatalf("%s: %v", c.line, err)
	}
	req.Header = header
	return req
}

// runCurls runs every printed curl command: always as the equivalent Go
// request, and also with the real curl through sh when both are installed.
// Each must answer the status its comment promises.
func runCurls(t *testing.T, pr printed) {
	t.Helper()
	if len(pr.curls) == 0 {
		t.Fatal("no curl commands printed")
	}
	for _, c := range pr.curls {
		res := do(t, c.request(t))
		if res.status != c.want {
			t.Errorf("%s\n  answered %d %s; the printed comment says %d", c.line, res.status, res.body, c.want)
		}
	}
	_, errCurl := exec.LookPath("curl")
	sh, errSh := exec.LookPath("sh")
	if errCurl != nil || errSh != nil {
		t.Log("curl or sh not installed: the printed commands ran as Go requests only")
		return
	}
	var assign strings.Builder
	for _, l := range pr.lines {
		if assignment.MatchString(l) {
			assign.WriteString(l + "\n")
		}
	}
	for _, c := range pr.curls {
		script := assign.String() + c.line + ` -s -o /dev/null -w '%{http_code}'`
		out, err := exec.Command(sh, "-c", script).Output()
		if err != nil {
			t.Errorf("sh -c %q: %v", script, err)
			continue
		}
		if got := strings.TrimSpace(string(out)); got != strconv.Itoa(c.want) {
			t.Errorf("%s\n  with curl: status %s; the printed comment says %d", c.line, got, c.want)
		}
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

var httpClient = &http.Client{Timeout: 20 * time.Second}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// post sends body to url with the headers given as name, value pairs; an
// empty value sends no header.
func post(t *testing.T, url, body string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] != "" {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return do(t, req)
}

func get(t *testing.T, url string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// find returns the first submatch of re in lines, failing the test if
// there is none.
func find(t *testing.T, lines []string, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	for _, l := range lines {
		if m := rx.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no line matches %s in:\n%s", re, strings.Join(lines, "\n"))
	return ""
}

// exitCode is the exit status of a finished process, from the error of
// exec.Cmd.Wait.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	return -1
}
