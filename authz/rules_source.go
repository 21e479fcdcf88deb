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

	"github.com/funcmesh/funcmesh/transport"
)

// ServiceRulesJSON adds the rule config of one service in the form Space
// Cloud wrote it, {"functions": {"charge": {"rule": …}}} (see
// [ParseServiceRules]). It adds up with [Rules], [RulesJSON], [RulesFile],
// [RulesDir] and other ServiceRulesJSON into one rule config, in which
// each service may be given once; "default" is the service that stands
// for the others, as in the services wrapper.
func ServiceRulesJSON(service string, data []byte) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &serviceRulesSource{service: service, json: data})
	})
}

// RulesDir adds the service configs in a directory: each file
// <service>.json holds the config of that service in the form of
// [ServiceRulesJSON] (default.json the "default" service's). Other files,
// hidden files and subdirectories are skipped. Errors name the file and
// the path in it. With [WithWatch], changes to the directory are loaded
// while running.
func RulesDir(path string) Option {
	return optionFunc(func(c *config) {
		c.sources = append(c.sources, &rulesDirSource{path: path})
	})
}

type serviceRulesSource struct {
	service string
	json    []byte
}

func (s *serviceRulesSource) load(l *loaded) error {
	if err := transport.ValidateName(s.service); err != nil {
		return fmt.Errorf("authz: ServiceRulesJSON: %w", err)
	}
	svc, err := parseServiceRules("", s.json)
	if err != nil {
		return fmt.Errorf("authz: ServiceRulesJSON(%q): %w", s.service, err)
	}
	return l.addRules("ServiceRulesJSON", &RuleConfig{Services: map[string]ServiceRules{s.service: *svc}})
}

type rulesDirSource struct {
	path string
}

func (s *rulesDirSource) load(l *loaded) error {
	entries, err := os.ReadDir(s.path)
	if err != nil {
		return fmt.Errorf("authz: RulesDir: %w", err)
	}
	cfg := &RuleConfig{Services: map[string]ServiceRules{}}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		service, ok := strings.CutSuffix(name, ".json")
		if !ok || strings.HasPrefix(name, ".") || e.IsDir() || e.Type()&fs.ModeType != 0 && e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		file := filepath.Join(s.path, name)
		if err := transport.ValidateName(service); err != nil {
			errs = append(errs, &RuleError{File: file, Msg: fmt.Sprintf("the file name is not a service name: %v", err)})
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("authz: %w", err))
			continue
		}
		if len(data) == 0 {
			errs = append(errs, fmt.Errorf("authz: %s is empty (a write in progress?)", file))
			continue
		}
		l.files = append(l.files, file)
		svc, err := parseServiceRules(file, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cfg.Services[service] = *svc
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return l.addRules("RulesDir "+s.path, cfg)
}

// addRules adds a rule config to the one loaded so far; a service given
// by two sources is an error.
func (l *loaded) addRules(from string, cfg *RuleConfig) error {
	if l.rules == nil {
		l.rules = &RuleConfig{Services: map[string]ServiceRules{}}
		l.rulesFrom = map[string]string{}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Services)) {
		if prev, dup := l.rulesFrom[name]; dup {
			return &RuleError{Path: joinPath("services", name), Msg: fmt.Sprintf("given twice, by %s and by %s", prev, from)}
		}
		l.rulesFrom[name] = from
		l.rules.Services[name] = cfg.Services[name]
	}
	return nil
}
