package authz

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputUses records which parts of the input document a compiled policy
// can read, so that the rest need not be built per call: the body is only
// decoded into params when a policy refers to input.params, and then only
// the parts it refers to.
type inputUses struct {
	all bool // input read whole or by a computed key

	// paths are the parts of input read, each the constant keys of a
	// reference below input (input.params.amount is ["params",
	// "amount"]), cut at the first key that is not a constant string:
	// everything below a path may be read. No path is a prefix of
	// another, and none is empty.
	paths [][]string

	// eager is set when the policy may change the input document in
	// place: OPA's with keyword and http.send copy objects with Copy and
	// then Insert into the copy, and the Copy of the lazy objects the
	// input is built from (ast.LazyObject) returns the object itself.
	// Such a policy gets an input built of ordinary objects.
	eager bool
}

// union returns the parts either u or v reads.
func (u inputUses) union(v inputUses) inputUses {
	w := inputUses{all: u.all || v.all, eager: u.eager || v.eager}
	for _, p := range u.paths {
		w.add(p)
	}
	for _, p := range v.paths {
		w.add(p)
	}
	return w
}

// add records a read of path, keeping paths minimal.
func (u *inputUses) add(path []string) {
	if len(path) == 0 {
		u.all = true
		return
	}
	for _, p := range u.paths {
		if hasPrefix(path, p) {
			return // already read whole
		}
	}
	u.paths = slices.DeleteFunc(u.paths, func(p []string) bool { return hasPrefix(p, path) })
	u.paths = append(u.paths, slices.Clone(path))
}

func hasPrefix(path, prefix []string) bool {
	return len(path) >= len(prefix) && slices.Equal(path[:len(prefix)], prefix)
}

// has reports whether the policy may read input[key].
func (u inputUses) has(key string) bool {
	if u.all {
		return true
	}
	for _, p := range u.paths {
		if p[0] == key {
			return true
		}
	}
	return false
}

// below returns what the policy reads of input[key]: whole, or the paths
// below it (nil when it reads nothing).
func (u inputUses) below(key string) (whole bool, paths [][]string) {
	if u.all {
		return true, nil
	}
	for _, p := range u.paths {
		if p[0] != key {
			continue
		}
		if len(p) == 1 {
			return true, nil
		}
		paths = append(paths, p[1:])
	}
	return false, paths
}

// usesOf walks the compiled modules (and queries) for references to
// input. A reference input.<key>… marks the path of its constant keys;
// input alone, input[x] with a computed key, or input passed as a value
// anywhere marks all of it.
func usesOf(nodes ...any) inputUses {
	var u inputUses
	var vis *ast.GenericVisitor
	vis = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case ast.Ref:
			if !x[0].Equal(ast.InputRootDocument) {
				return false
			}
			u.mark(x)
			for _, t := range x[1:] {
				vis.Walk(t) // a computed key may itself read input
			}
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				u.all = true
			}
		case *ast.Expr:
			if len(x.With) > 0 || x.IsCall() && copiesInput[x.Operator().String()] {
				u.eager = true
			}
		case ast.Call:
			if copiesInput[x[0].String()] {
				u.eager = true
			}
		}
		return false
	})
	for _, n := range nodes {
		vis.Walk(n)
	}
	return u
}

// copiesInput names the built-ins that copy an object given to them and
// insert into the copy.
var copiesInput = map[string]bool{"http.send": true, "providers.aws.sign_req": true}

func (u *inputUses) mark(ref ast.Ref) {
	var path []string
	for _, t := range ref[1:] {
		k, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		path = append(path, string(k))
	}
	u.add(path)
}
