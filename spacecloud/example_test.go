package spacecloud_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/funcmesh/funcmesh/spacecloud"
	"github.com/funcmesh/funcmesh/transport"
)

// The Handler in front of the native chain. Here a stand-in for the chain
// answers as the gateway and the policy would; in an app, Next is the
// chain that serves POST /fn/{service}/{function}.
func ExampleHandler() {
	native := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		params, _ := io.ReadAll(r.Body)
		if r.PathValue("function") == "secret" {
			transport.WriteHTTPError(w, transport.NewError(transport.CodePermissionDenied, "permission denied"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"called":"%s.%s","params":%s,"timeoutMs":"%s"}`,
			r.PathValue("service"), r.PathValue("function"), params, r.Header.Get(transport.HeaderTimeoutMs))
	})
	sc := &spacecloud.Handler{Next: native, Project: "todo-app"}
	mux := http.NewServeMux()
	mux.Handle(spacecloud.Pattern, sc)
	mux.Handle(spacecloud.LegacyPattern, sc)

	for _, call := range []struct{ path, body string }{
		{"/v1/api/todo-app/services/todos/add", `{"params": {"title": "milk"}, "timeout": 2}`},
		{"/v1/api/todo-app/functions/todos/secret", `{"params": {}}`},
		{"/v1/api/todo-app/services/todos/add", `{"timeout": "soon"}`},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("POST", call.path, strings.NewReader(call.body)))
		fmt.Print(w.Code, " ", w.Body)
	}
	// Output:
	// 200 {"result":{"called":"todos.add","params":{"title": "milk"},"timeoutMs":"2000"}}
	// 403 {"error":"permission denied"}
	// 400 {"error":"timeout: want a number of seconds"}
}
