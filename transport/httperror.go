package transport

import (
	"encoding/json"
	"net/http"
)

// WriteHTTPError writes err as the JSON error body every funcmesh handler
// and middleware answers with:
//
//	{"error": {"code": "permission_denied", "message": "...", "request_id": "..."}}
//
// with the status of [AsError](err). The message is the caller-safe one;
// the text of a wrapped cause is never written. The request ID is the one
// the request ID middleware put in the response header, when present.
func WriteHTTPError(w http.ResponseWriter, err error) {
	e := AsError(err)
	if e == nil {
		e = NewError(CodeInternal, DefaultMessage(CodeInternal))
	}
	body := errorBody{Error: errorDetail{
		Code:      e.code,
		Message:   e.message,
		RequestID: w.Header().Get(HeaderXRequestID),
	}}
	b, _ := json.Marshal(body) // cannot fail: strings only
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(e.status)
	_, _ = w.Write(append(b, '\n'))
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      Code   `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id,omitempty"`
}

// ParseHTTPError decodes an error body written by [WriteHTTPError]; it is
// for HTTP clients of the gateway, tests among them.
func ParseHTTPError(status int, body []byte) (*Error, string, error) {
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		return nil, "", err
	}
	e := ErrorWithStatus(status, eb.Error.Message)
	if eb.Error.Code.Valid() {
		e.code = eb.Error.Code
	}
	return e, eb.Error.RequestID, nil
}
