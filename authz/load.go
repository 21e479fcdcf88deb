package authz

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
)

// ErrNoPolicy is returned (wrapped) when the sources hold neither a Rego
// module nor a rule config: there would be nothing to allow any call.
var ErrNoPolicy = errors.New("authz: no policy: no Rego module and no rule config")

// A source is where part of a policy comes from. load adds what it holds to
// the loaded set; it is called again on every reload.
type source interface {
	load(*loaded) error
}

// loaded is everything the sources hold, before compilation.
type loaded struct {
	modules map[string]*ast.Module
	data    map[string]any
	rules   *RuleConfig

	// files are the files on disk the set was read from (modules, data
	// documents, the rule config), for the watcher's wholeness check.
	files []string
}

func loadSources(sources []source) (*loaded, error) {
	l := &loaded{modules: map[string]*ast.Module{}, data: map[string]any{}}
	for _, s := range sources {
		if err := s.load(l); err != nil {
			return nil, err
		}
	}
	if len(l.modules) == 0 && l.rules == nil {
		return nil, ErrNoPolicy
	}
	return l, nil
}

func (l *loaded) addModule(name string, m *ast.Module) error {
	if _, dup := l.modules[name]; dup {
		return fmt.Errorf("authz: module %s loaded twice", name)
	}
	l.modules[name] = m
	return nil
}

func (l *loaded) addData(from string, doc map[string]any) error {
	if err := mergeData(l.data, doc, nil); err != nil {
		return fmt.Errorf("authz: data from %s: %w", from, err)
	}
	return nil
}

// mergeData merges src into dst; a key both define as anything but two
// objects is a conflict.
func mergeData(dst, src map[string]any, at []string) error {
	for _, k := range slices.Sorted(maps.Keys(src)) {
		v := src[k]
		old, ok := dst[k]
		if !ok {
			dst[k] = v
			continue
		}
		om, ok1 := old.(map[string]any)
		nm, ok2 := v.(map[string]any)
		here := append(slices.Clip(at), k)
		if !ok1 || !ok2 {
			return fmt.Errorf("data.%s defined twice", strings.Join(here, "."))
		}
		merged := maps.Clone(om) // never write into a caller's map
		if err := mergeData(merged, nm, here); err != nil {
			return err
		}
		dst[k] = merged
	}
	return nil
}

// fileSource is a file or directory on disk (fsys nil) or in an fs.FS.
type fileSource struct {
	fsys fs.FS
	path string
}

func (s *fileSource) load(l *loaded) error {
	fl := loader.NewFileLoader().WithRegoVersion(ast.RegoV1).WithProcessAnnotation(true)
	if s.fsys != nil {
		fl = fl.WithFS(s.fsys)
	}
	var empty []string
	res, err := fl.Filtered([]string{s.path}, func(abspath string, info fs.FileInfo, depth int) bool {
		if skipFile(abspath, info, depth) {
			return true
		}
		if !info.IsDir() && (depth == 0 || policyFile(info.Name())) {
			if s.fsys == nil {
				l.files = append(l.files, abspath)
			}
			if info.Size() == 0 {
				empty = append(empty, abspath)
			}
		}
		return false
	})
	if err == nil && len(empty) > 0 {
		err = fmt.Errorf("%s is empty (a write in progress?)", strings.Join(empty, ", "))
	}
	if err != nil {
		return fmt.Errorf("authz: loading %s: %w", s.path, err)
	}
	for _, name := range slices.Sorted(maps.Keys(res.Modules)) {
		if err := l.addModule(name, res.Modules[name].Parsed); err != nil {
			return err
		}
	}
	return l.addData(s.path, res.Documents)
}

// skipFile leaves out hidden files and directories (editor swap files,
// .git) and Rego test files below the paths given.
func skipFile(abspath string, info fs.FileInfo, depth int) bool {
	if depth == 0 {
		return false
	}
	name := info.Name()
	return strings.HasPrefix(name, ".") || !info.IsDir() && strings.HasSuffix(name, "_test.rego")
}

// policyFile reports whether the loader reads a file of this name below
// a directory given to it: a module or a data document.
func policyFile(name string) bool {
	switch filepath.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// missingFiles returns the files of old that now are not among those of
// l.
func (l *loaded) missingFiles(old []string) []string {
	var missing []string
	for _, f := range old {
		if !slices.Contains(l.files, f) {
			missing = append(missing, f)
		}
	}
	return missing
}

// watchedPath is the file or directory a source reads from disk, for
// the watcher; "" when it reads none.
func watchedPath(s source) string {
	switch s := s.(type) {
	case *fileSource:
		if s.fsys == nil {
			return s.path
		}
	case *rulesSource:
		return s.path
	case *serviceRulesSource:
		return s.dir
	}
	return ""
}

type moduleSource struct {
	name, src string
}

func (s *moduleSource) load(l *loaded) error {
	m, err := ast.ParseModuleWithOpts(s.name, s.src, ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	return l.addModule(s.name, m)
}

type dataSource struct {
	doc map[string]any
}

func (s *dataSource) load(l *loaded) error {
	return l.addData("Data", s.doc)
}

// rulesSource is a rule config given as a value, as JSON or as a file.
type rulesSource struct {
	cfg  *RuleConfig
	json []byte
	path string
}

func (s *rulesSource) load(l *loaded) error {
	cfg := s.cfg
	switch {
	case s.path != "":
		b, err := os.ReadFile(s.path)
		if err != nil {
			return fmt.Errorf("authz: %w", err)
		}
		if len(b) == 0 {
			return fmt.Errorf("authz: %s is empty (a write in progress?)", s.path)
		}
		l.files = append(l.files, s.path)
		if cfg, err = ParseRules(b); err != nil {
			return fmt.Errorf("%s: %w", s.path, err)
		}
	case s.json != nil:
		var err error
		if cfg, err = ParseRules(s.json); err != nil {
			return err
		}
	default:
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	return l.addRules(cfg, "")
}

// addRules merges the services of cfg into the rule config loaded so
// far; a service two sources define is an error. from names the source
// in that error.
func (l *loaded) addRules(cfg *RuleConfig, from string) error {
	if l.rules == nil {
		l.rules = &RuleConfig{Services: map[string]ServiceRules{}}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		if _, dup := l.rules.Services[name]; dup {
			if from != "" {
				return fmt.Errorf("authz: %s: service %q has rules in another source too", from, name)
			}
			return fmt.Errorf("authz: rule config: service %q has rules in another source too", name)
		}
		l.rules.Services[name] = cfg.Services[name]
	}
	return nil
}

// serviceRulesSource is one service's rules in the form Space Cloud
// wrote them, {"functions": {...}}: given as JSON for a service, or a
// directory of <service>.json files.
type serviceRulesSource struct {
	service string
	json    []byte
	dir     string
}

func (s *serviceRulesSource) load(l *loaded) error {
	if s.dir == "" {
		sr, err := ParseServiceRules(s.service, s.json)
		if err != nil {
			return err
		}
		return l.addRules(&RuleConfig{Services: map[string]ServiceRules{s.service: *sr}}, "")
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("authz: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if e.IsDir() || !ok || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(s.dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("authz: %w", err)
		}
		if len(b) == 0 {
			return fmt.Errorf("authz: %s is empty (a write in progress?)", path)
		}
		l.files = append(l.files, path)
		sr, err := ParseServiceRules(name, b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := l.addRules(&RuleConfig{Services: map[string]ServiceRules{name: *sr}}, path); err != nil {
			return err
		}
	}
	return nil
}
