package authz_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/funcmesh/funcmesh/authz"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Write then rename, as editors and ConfigMaps do, so that the watcher
	// never reads half a file.
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// reloads collects what the reload hook reports.
type reloads chan error

func (r reloads) hook(err error) { r <- err }

// waitFor polls cond, waking on each reload, until it holds or ten
// seconds pass.
func (r reloads) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	r.waitForErr(t, what, func(error) bool { return cond() })
}

// waitForErr is waitFor with a condition on the latest reload's result
// (nil before the first reload).
func (r reloads) waitForErr(t *testing.T, what string, cond func(last error) bool) error {
	t.Helper()
	var seen []error
	var last error
	deadline := time.After(10 * time.Second)
	for !cond(last) {
		select {
		case last = <-r:
			seen = append(seen, last)
		case <-deadline:
			t.Fatalf("timed out waiting for %s (reloads: %v)", what, seen)
		}
	}
	return last
}

func allows(t *testing.T, a *authz.Authorizer, role string) bool {
	t.Helper()
	d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f", Auth: map[string]any{"role": role}})
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	return d.Allow
}

func policyFor(role string) string {
	return fmt.Sprintf("package funcmesh.authz\nallow if input.auth.role == %q\n", role)
}

func TestWatchReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.rego"), policyFor("admin"))
	r := make(reloads, 100)
	a := newAuthorizer(t, authz.Files(dir), authz.WithWatch(true), authz.WithReloadHook(r.hook))
	if !allows(t, a, "admin") || allows(t, a, "user") {
		t.Fatal("initial policy wrong")
	}

	// A valid change takes effect.
	writeFile(t, filepath.Join(dir, "policy.rego"), policyFor("user"))
	r.waitFor(t, "the new policy", func() bool { return allows(t, a, "user") })
	if allows(t, a, "admin") {
		t.Error("old policy still allows admin")
	}

	// A broken change is reported and keeps the policy in use.
	writeFile(t, filepath.Join(dir, "policy.rego"), "package funcmesh.authz\nallow if {\n")
	failed := r.waitForErr(t, "a failed reload", func(err error) bool { return err != nil })
	if !allows(t, a, "user") {
		t.Error("a broken change replaced the policy")
	}
	if failed == nil || !strings.Contains(failed.Error(), "policy.rego") {
		t.Errorf("reload error %v; want one naming the file", failed)
	}

	// Files in new subdirectories are picked up: data under data.sub.more.
	writeFile(t, filepath.Join(dir, "policy.rego"), "package funcmesh.authz\nallow if input.auth.role in data.sub.more\n")
	writeFile(t, filepath.Join(dir, "sub", "more", "roles.json"), `["ops"]`)
	r.waitFor(t, "the new directory's data", func() bool { return allows(t, a, "ops") })
	writeFile(t, filepath.Join(dir, "sub", "more", "roles.json"), `["dev"]`)
	r.waitFor(t, "a change in the new directory", func() bool { return allows(t, a, "dev") })

	// Deleting everything leaves no policy: refused, the old one stays.
	for _, p := range []string{"policy.rego", filepath.Join("sub", "more", "roles.json")} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil {
			t.Fatal(err)
		}
	}
	r.waitForErr(t, "the refusal of an empty policy", func(err error) bool { return errors.Is(err, authz.ErrNoPolicy) })
	if !allows(t, a, "dev") {
		t.Error("the emptied directory replaced the policy")
	}

	// After Close, changes are no longer watched; Reload still works.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policy.rego"), policyFor("closed"))
	if err := a.Reload(context.Background()); err != nil || !allows(t, a, "closed") {
		t.Errorf("Reload after Close: %v", err)
	}
}

func TestWatchRulesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.json")
	rules := func(kind string) string {
		return `{"services": {"default": {"functions": {"default": {"rule": {"rule": "` + kind + `"}}}}}}`
	}
	writeFile(t, path, rules("deny"))
	r := make(reloads, 100)
	a := newAuthorizer(t, authz.RulesFile(path), authz.WithWatch(true), authz.WithReloadHook(r.hook))
	if allows(t, a, "x") {
		t.Fatal("deny rule allowed")
	}
	writeFile(t, path, rules("allow"))
	r.waitFor(t, "the allow rule", func() bool { return allows(t, a, "x") })

	writeFile(t, path, rules("perhaps"))
	failed := r.waitForErr(t, "a failed reload", func(err error) bool { return err != nil })
	if !strings.Contains(failed.Error(), `services.default.functions.default.rule.rule: unknown rule kind "perhaps"`) {
		t.Errorf("reload error %v; want the config path", failed)
	}
	if !allows(t, a, "x") {
		t.Error("a broken config replaced the rules")
	}
}

// TestReloadIsAtomic runs requests while the policy is swapped back and
// forth between two versions, each spread over two modules and a data
// file that only agree within one version: a request that saw parts of
// two versions would be denied. Run it with -race.
func TestReloadIsAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(v string) {
		writeFile(t, filepath.Join(dir, "a.rego"), "package funcmesh.authz\nx := \""+v+"\"\n")
		writeFile(t, filepath.Join(dir, "b.rego"), "package funcmesh.authz\nallow if {\n\tx == y\n\ty == data.version\n}\ny := \""+v+"\"\n")
		writeFile(t, filepath.Join(dir, "data.json"), `{"version": "`+v+`"}`)
	}
	write("A")
	a := newAuthorizer(t, authz.Files(dir), authz.WithQuery("data.funcmesh.authz.allow"))
	rules := newAuthorizer(t, authz.RulesJSON([]byte(designRules)))

	var (
		stop   atomic.Bool
		denied atomic.Int64
		calls  atomic.Int64
		wg     sync.WaitGroup
	)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				d, err := a.Authorize(context.Background(), authz.Input{Service: "s", Function: "f"})
				if err != nil || !d.Allow {
					denied.Add(1)
				}
				calls.Add(1)
			}
		}()
	}
	for i := range 20 {
		write([]string{"A", "B"}[i%2])
		if err := a.Reload(context.Background()); err != nil {
			t.Errorf("Reload: %v", err)
		}
		if err := rules.Reload(context.Background()); err != nil {
			t.Errorf("Reload of a rule config: %v", err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := denied.Load(); n > 0 {
		t.Errorf("%d of %d calls saw a mixed policy", n, calls.Load())
	}
	if calls.Load() == 0 {
		t.Error("no calls made")
	}
}

// TestWatchKeepsWholeSet is issue 16's item 5: a data file deleted and
// written again more than the watcher's delay apart used to be reloaded
// without its data in between, and "allow if not data.blocklist[…]" then
// allowed everyone. Each way a file goes missing for a while (a delete, a
// rename, an editor's save, a write in progress) must keep the blocklist
// in force.
func TestWatchKeepsWholeSet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.rego"),
		"package funcmesh.authz\nallow if not data.blocklist[input.auth.role]\n")
	data := filepath.Join(dir, "blocklist", "data.json")
	writeFile(t, data, `{"mallory": true}`)
	r := make(reloads, 100)
	a := newAuthorizer(t, authz.Files(dir), authz.WithWatch(true), authz.WithReloadHook(r.hook))
	if allows(t, a, "mallory") || !allows(t, a, "alice") {
		t.Fatal("initial policy wrong")
	}
	blocked := "mallory" // the name in the data file in use
	incomplete := func(what string) {
		t.Helper()
		err := r.waitForErr(t, what+" reported", func(err error) bool { return err != nil })
		if !errors.Is(err, authz.ErrIncomplete) || !strings.Contains(err.Error(), "data.json") {
			t.Errorf("%s: reload error %v; want ErrIncomplete naming data.json", what, err)
		}
		if allows(t, a, blocked) {
			t.Fatalf("%s: the blocklist was dropped", what)
		}
	}
	reloaded := func(what, name string) {
		t.Helper()
		r.waitFor(t, what, func() bool { return !allows(t, a, name) && allows(t, a, "alice") })
		blocked = name
	}

	// Deleted, and written again only after a reload has seen it gone.
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	incomplete("a deleted data file")
	writeFile(t, data, `{"trudy": true}`)
	reloaded("the recreated file", "trudy")

	// Renamed away and back.
	if err := os.Rename(data, data+".bak"); err != nil {
		t.Fatal(err)
	}
	incomplete("a renamed data file")
	if err := os.Rename(data+".bak", data); err != nil {
		t.Fatal(err)
	}
	reloaded("the file renamed back", "trudy")

	// An editor that moves the file to a backup, then writes it anew (vim
	// without backupcopy): the file is missing between the two.
	if err := os.Rename(data, data+"~"); err != nil {
		t.Fatal(err)
	}
	incomplete("the file moved to a backup")
	writeFile(t, data, `{"mallory": true}`)
	reloaded("the editor's new file", "mallory")
	// An editor's atomic save (write a temporary file, rename it over):
	// never missing, loaded at once.
	writeFile(t, data, `{"eve": true}`)
	reloaded("the atomic save", "eve")

	// A write in progress: truncated to nothing, then half the document.
	if err := os.WriteFile(data, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.waitForErr(t, "the empty file refused", func(err error) bool { return err != nil })
	if !allows(t, a, "alice") || allows(t, a, "eve") {
		t.Errorf("empty file: %v; the blocklist must stay", err)
	}
	if err := os.WriteFile(data, []byte(`{"mallory": tr`), 0o644); err != nil {
		t.Fatal(err)
	}
	r.waitForErr(t, "the half-written file refused", func(err error) bool { return err != nil && strings.Contains(err.Error(), "unexpected EOF") })
	if allows(t, a, "eve") {
		t.Error("a half-written file dropped the blocklist")
	}
	if err := os.WriteFile(data, []byte(`{"mallory": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded("the finished write", "mallory")

	// An empty YAML document is null, not an error, to OPA's loader: a
	// file of 0 bytes is refused as a write in progress.
	yaml := filepath.Join(dir, "extra", "more.yaml")
	if err := os.MkdirAll(filepath.Dir(yaml), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(yaml, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = r.waitForErr(t, "the empty YAML file refused", func(err error) bool { return err != nil && strings.Contains(err.Error(), "empty") })
	if !strings.Contains(err.Error(), "more.yaml is empty") {
		t.Errorf("empty YAML: %v", err)
	}
	if err := os.Remove(yaml); err != nil {
		t.Fatal(err)
	}
	r.waitForErr(t, "the set without the YAML file", func(err error) bool { return err == nil })

	// Removing the file on purpose takes a Reload.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !allows(t, a, "mallory") {
		t.Error("Reload kept the removed blocklist")
	}
}
