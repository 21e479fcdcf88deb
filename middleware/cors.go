package middleware

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/funcmesh/funcmesh/transport"
	"github.com/rs/cors"
)

// CORSOptions configures [CORS]. The zero value of every field but
// AllowedOrigins means the default given with it.
type CORSOptions struct {
	// AllowedOrigins lists the origins ("https://app.example.com", with a
	// port when not the scheme's default) whose pages may call. An origin
	// may hold one "*" standing for any run of characters
	// ("https://*.example.com"), and "*" alone allows every origin, which
	// is refused together with AllowCredentials. Required.
	AllowedOrigins []string

	// AllowedMethods defaults to POST, GET and OPTIONS.
	AllowedMethods []string

	// AllowedHeaders are the request headers a page may send; they default
	// to Authorization, Content-Type, X-Request-Id, Mesh-Timeout-Ms, and
	// Prefer and Idempotency-Key for async calls.
	AllowedHeaders []string

	// ExposedHeaders are the response headers a page may read; they
	// default to X-Request-Id, and Location, Preference-Applied and
	// Retry-After for async calls.
	ExposedHeaders []string

	// AllowCredentials lets pages send cookies and HTTP authentication
	// (needed when the JWT travels in a cookie).
	AllowCredentials bool

	// MaxAge is how long a browser may cache the answer to a preflight
	// request: 10 minutes by default, in whole seconds; a negative value
	// asks browsers not to cache it.
	MaxAge time.Duration
}

// DefaultCORSMaxAge is the preflight cache time when CORSOptions.MaxAge is
// zero.
const DefaultCORSMaxAge = 10 * time.Minute

// CORS returns middleware that lets web pages on other origins call the
// handlers after it, answering CORS preflight requests (OPTIONS with
// Access-Control-Request-Method) itself with 204, and adding the
// Access-Control-* headers to the actual requests of allowed origins. It
// is github.com/rs/cors with safe defaults. Requests from origins not
// allowed get no CORS headers, so the browser withholds the response from
// the page; the handler still runs, so CORS is not an access control.
//
// Preflight requests are OPTIONS requests, so CORS must see them: wrap the
// whole mux with it, or mount it on a pattern without a method
// ("/fn/{service}/{function}"), since a pattern like "POST /fn/..." makes
// the mux answer OPTIONS with 405 before CORS runs.
//
// It returns an error when AllowedOrigins is empty or holds something that
// is not an origin, or when "*" is combined with AllowCredentials.
func CORS(opts CORSOptions) (func(http.Handler) http.Handler, error) {
	if len(opts.AllowedOrigins) == 0 {
		return nil, errors.New("middleware: CORS: no allowed origins")
	}
	for _, o := range opts.AllowedOrigins {
		if o == "*" {
			if opts.AllowCredentials {
				return nil, errors.New(`middleware: CORS: origin "*" with AllowCredentials would let every site act as the user`)
			}
			continue
		}
		if err := validOrigin(o); err != nil {
			return nil, fmt.Errorf("middleware: CORS: origin %q: %w", o, err)
		}
	}
	co := cors.Options{
		AllowedOrigins:   opts.AllowedOrigins,
		AllowedMethods:   orDefault(opts.AllowedMethods, http.MethodPost, http.MethodGet, http.MethodOptions),
		AllowedHeaders:   orDefault(opts.AllowedHeaders, "Authorization", "Content-Type", transport.HeaderXRequestID, transport.HeaderTimeoutMs, "Prefer", "Idempotency-Key"),
		ExposedHeaders:   orDefault(opts.ExposedHeaders, transport.HeaderXRequestID, "Location", "Preference-Applied", "Retry-After"),
		AllowCredentials: opts.AllowCredentials,
	}
	switch {
	case opts.MaxAge == 0:
		co.MaxAge = int(DefaultCORSMaxAge / time.Second)
	case opts.MaxAge < 0:
		co.MaxAge = -1
	default:
		co.MaxAge = max(1, int(opts.MaxAge/time.Second))
	}
	return cors.New(co).Handler, nil
}

func orDefault(s []string, def ...string) []string {
	if len(s) == 0 {
		return def
	}
	return s
}

// validOrigin checks that o is scheme://host[:port] with nothing after
// it, allowing one "*" in the host.
func validOrigin(o string) error {
	if strings.Count(o, "*") > 1 {
		return errors.New(`more than one "*"`)
	}
	u, err := url.Parse(strings.Replace(o, "*", "wildcard", 1))
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return errors.New("want scheme://host[:port]")
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
		return errors.New("an origin has no path, query, fragment or user")
	}
	return nil
}
