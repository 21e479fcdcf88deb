package readme_test

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnippetsCompile checks that every ```go and ```rego block in
// README.md, CHANGELOG.md and docs/*.md stands, line for line
// (indentation aside), in a Go or Rego file of the repository, so a
// snippet in the docs is always code the compiler and tests (authz tests
// its Rego with OPA's tester) have seen.
func TestSnippetsCompile(t *testing.T) {
	docs, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append([]string{"../../README.md", "../../CHANGELOG.md"}, docs...)
	sources := repositorySources(t)
	for _, doc := range docs {
		md, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		blocks := goBlocks(md)
		if doc == "../../README.md" && len(blocks) == 0 {
			t.Fatal("README.md has no ```go or ```rego blocks; the tour should show code")
		}
		name := strings.TrimPrefix(doc, "../../")
		for _, b := range blocks {
			lines := normalize([]byte(b.text))
			found := false
			for _, src := range sources {
				if contains(src, lines) {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s line %d: the snippet starting %q is not in any Go or Rego file; copy it from an Example, an example program or a tested policy", name, b.line, lines[0])
			}
		}
	}
}

// repositorySources returns the normalized lines of every Go and Rego
// file of the repository.
func repositorySources(t *testing.T) [][]string {
	t.Helper()
	var sources [][]string
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || strings.HasSuffix(path, ".rego")) {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sources = append(sources, normalize(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sources
}

type block struct {
	line int
	text string
}

func goBlocks(md []byte) []block {
	var out []block
	var cur *strings.Builder
	start := 0
	sc := bufio.NewScanner(bytes.NewReader(md))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case cur == nil && (strings.TrimSpace(l) == "```go" || strings.TrimSpace(l) == "```rego"):
			cur, start = &strings.Builder{}, n
		case cur != nil && strings.TrimSpace(l) == "```":
			out = append(out, block{start, cur.String()})
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	return out
}

func normalize(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func contains(src, want []string) bool {
	if len(want) == 0 {
		return true
	}
	for i := 0; i+len(want) <= len(src); i++ {
		if src[i] == want[0] {
			match := true
			for j := 1; j < len(want); j++ {
				if src[i+j] != want[j] {
					match = false
					break
				}
			}
			if match {
				return true
			}
		}
	}
	return false
}
