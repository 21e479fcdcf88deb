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

	// types are the parts of input of which only the type is read: every
	// reference to them is the value a type built-in tests (is_object,
	// type_name, …; see typeBuiltins), as in is_object(input.auth). None
	// is below a path of paths (that reads it whole) or empty.
	types [][]string

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
	for _, p := range slices.Concat(u.types, v.types) {
		w.addType(p)
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
	u.types = slices.DeleteFunc(u.types, func(p []string) bool { return hasPrefix(p, path) })
}

// addType records a read of path's type alone.
func (u *inputUses) addType(path []string) {
	if len(path) == 0 {
		u.all = true
		return
	}
	for _, p := range u.paths {
		if hasPrefix(path, p) {
			return // its value is read
		}
	}
	if !slices.ContainsFunc(u.types, func(p []string) bool { return slices.Equal(p, path) }) {
		u.types = append(u.types, slices.Clone(path))
	}
}

func hasPrefix(path, prefix []string) bool {
	return len(path) >= len(prefix) && slices.Equal(path[:len(prefix)], prefix)
}

// has reports whether the policy may read input[key] (or its type).
func (u inputUses) has(key string) bool {
	if u.all {
		return true
	}
	for _, paths := range [2][][]string{u.paths, u.types} {
		for _, p := range paths {
			if p[0] == key {
				return true
			}
		}
	}
	return false
}

// below returns what the policy reads of input[key], its type included:
// whole, or the paths below it (nil when it reads nothing). A part whose
// type is read is built whole.
func (u inputUses) below(key string) (whole bool, paths [][]string) {
	if u.all {
		return true, nil
	}
	var reads inputUses // a type read as a value read, and paths minimal again
	for _, p := range slices.Concat(u.paths, u.types) {
		if p[0] == key {
			reads.add(p)
		}
	}
	for _, p := range reads.paths {
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
// anywhere marks all of it. A reference of constant keys that a type
// built-in tests (is_object(input.auth)) marks only its path's type.
func usesOf(nodes ...any) inputUses {
	var u inputUses
	var vis *ast.GenericVisitor
	// typeTest marks the type of what the type built-in call terms tests,
	// and walks the rest of the call; it reports whether it did.
	typeTest := func(terms []*ast.Term) bool {
		if len(terms) < 2 || !typeBuiltins[terms[0].String()] {
			return false
		}
		path, ok := constantPath(terms[1])
		if !ok {
			return false
		}
		u.addType(path)
		for _, t := range terms[2:] {
			vis.Walk(t)
		}
		return true
	}
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
			if terms, ok := x.Terms.([]*ast.Term); ok && len(x.With) == 0 && typeTest(terms) {
				return true
			}
		case ast.Call:
			if copiesInput[x[0].String()] {
				u.eager = true
			}
			return typeTest(x)
		}
		return false
	})
	for _, n := range nodes {
		vis.Walk(n)
	}
	return u
}

// typeBuiltins are the built-ins whose answer depends only on the type of
// their first argument.
var typeBuiltins = map[string]bool{
	"is_object": true, "is_array": true, "is_set": true, "is_string": true,
	"is_number": true, "is_boolean": true, "is_null": true, "type_name": true,
}

// constantPath returns the keys of t when it is a reference below input
// whose keys are all constant strings.
func constantPath(t *ast.Term) ([]string, bool) {
	ref, ok := t.Value.(ast.Ref)
	if !ok || len(ref) < 2 || !ref[0].Equal(ast.InputRootDocument) {
		return nil, false
	}
	path := make([]string, 0, len(ref)-1)
	for _, k := range ref[1:] {
		s, ok := k.Value.(ast.String)
		if !ok {
			return nil, false
		}
		path = append(path, string(s))
	}
	return path, true
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
