package authz

import (
	"github.com/open-policy-agent/opa/v1/ast"
)

// inputUses records which parts of the input document a compiled policy
// can read, so that the rest need not be built per call: the body is only
// decoded into params when a policy refers to input.params.
type inputUses struct {
	all      bool // input read whole or by a computed key
	service  bool
	function bool
	params   bool
	auth     bool
	caller   bool
	http     bool

	// eager is set when the policy may change the input document in
	// place: OPA's with keyword and http.send copy objects with Copy and
	// then Insert into the copy, and the Copy of the lazy objects the
	// input is built from (ast.LazyObject) returns the object itself.
	// Such a policy gets an input built of ordinary objects.
	eager bool
}

// union returns the parts either u or v reads.
func (u inputUses) union(v inputUses) inputUses {
	return inputUses{
		all:      u.all || v.all,
		service:  u.service || v.service,
		function: u.function || v.function,
		params:   u.params || v.params,
		auth:     u.auth || v.auth,
		caller:   u.caller || v.caller,
		http:     u.http || v.http,
		eager:    u.eager || v.eager,
	}
}

func (u inputUses) has(key string) bool {
	if u.all {
		return true
	}
	switch key {
	case "service":
		return u.service
	case "function":
		return u.function
	case "params":
		return u.params
	case "auth":
		return u.auth
	case "caller":
		return u.caller
	case "http":
		return u.http
	}
	return false
}

// usesOf walks the compiled modules (and query) for references to input.
// A reference input.<key>… with a constant first key marks that key; input
// alone, input[x] with a computed key, or input passed as a value anywhere
// marks all of it.
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
	if len(ref) < 2 {
		u.all = true
		return
	}
	key, ok := ref[1].Value.(ast.String)
	if !ok {
		u.all = true
		return
	}
	switch string(key) {
	case "service":
		u.service = true
	case "function":
		u.function = true
	case "params":
		u.params = true
	case "auth":
		u.auth = true
	case "caller":
		u.caller = true
	case "http":
		u.http = true
	}
}
