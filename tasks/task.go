package tasks

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/funcmesh/funcmesh/transport"
)

// Headers of a stored task. They never reach the function: the dispatcher
// makes a new call from them.
const (
	hID       = "Fm-Task-Id"
	hClaims   = "Fm-Claims"
	hSig      = "Fm-Claims-Sig"
	hExpires  = "Fm-Expires"
	hRequest  = "Fm-Request-Id"
	hRetry    = "Fm-Retry"
	hEnqueued = "Fm-Enqueued"
	hError    = "Fm-Error"
	hAttempts = "Fm-Attempts"
	hReplay   = "Fm-Replay"
	// hSchedule names the schedule whose message a task is; each tick the
	// server publishes from it is a task of its own (see tickID).
	hSchedule = "Fm-Schedule"
	hOverlap  = "Fm-Overlap"
	hTickOf   = "Fm-Tick-Of"
)

// Exported names of the schedule headers, for package schedules.
const (
	HeaderSchedule = hSchedule
	HeaderOverlap  = hOverlap
)

// tickID is the task ID of the tick of a schedule stored at stream
// sequence seq.
func tickID(template string, seq uint64) string {
	return keyID("tick", template, "", strconv.FormatUint(seq, 10))
}

// idEncoding writes task IDs: lower-case base32, no padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// IDLen is the length of a task ID: 26 characters of [a-z2-7], 128 bits.
const IDLen = 26

// newID returns a random task ID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// keyID is the task ID of an idempotent call: the same owner, function and
// key always give the same ID.
func keyID(owner, service, function, key string) string {
	h := sha256.New()
	for _, s := range []string{"funcmesh-task-key-v1", owner, service, function, key} {
		fmt.Fprintf(h, "%d:%s\n", len(s), s)
	}
	return idEncoding.EncodeToString(h.Sum(nil)[:16])
}

// ValidID reports whether s has the form of a task ID.
func ValidID(s string) bool {
	if len(s) != IDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// owner is who enqueued a task, from its claims: the issuer and subject,
// or "" for an anonymous caller.
func owner(claims string) string {
	if claims == "" {
		return ""
	}
	var c struct {
		Iss any `json:"iss"`
		Sub any `json:"sub"`
	}
	if json.Unmarshal([]byte(claims), &c) != nil || c.Sub == nil {
		// Verified claims without a subject: only their exact holder.
		sum := sha256.Sum256([]byte(claims))
		return "claims:" + hex.EncodeToString(sum[:16])
	}
	return fmt.Sprintf("%v\x00%v", c.Iss, c.Sub)
}

// ownerKey is what a status keeps of the owner: a digest, so that the
// bucket holds no subject in the clear.
func ownerKey(o string) string {
	if o == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("funcmesh-owner-v1\x00" + o))
	return hex.EncodeToString(sum[:16])
}

// task is a durable call as stored.
type task struct {
	id          string
	service     string
	function    string
	params      []byte
	contentType string
	claims      string // Mesh-Auth JSON, "" for anonymous
	sig         string
	requestID   string
	retry       Retry
	enqueued    time.Time
	expires     time.Time
	extra       nats.Header // passed to the function
	template    string      // a tick: the schedule's task ID, which the signature binds
	schedule    string      // the schedule a schedule message is of (signed: the policy sees it)
	overlap     string
}

func formatRetry(r Retry) string {
	b := make([]byte, 0, 32)
	b = strconv.AppendInt(b, int64(r.MaxAttempts), 10)
	for _, d := range []time.Duration{r.Timeout, r.Backoff, r.MaxBackoff} {
		b = append(b, ',')
		b = strconv.AppendInt(b, d.Milliseconds(), 10)
	}
	return string(b)
}

func parseRetry(s string) (Retry, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return Retry{}, errors.New("retry settings: want 4 numbers")
	}
	var n [4]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil || v <= 0 {
			return Retry{}, fmt.Errorf("retry settings: %q is not a positive number", p)
		}
		n[i] = v
	}
	return Retry{MaxAttempts: int(n[0]), Timeout: time.Duration(n[1]) * time.Millisecond,
		Backoff: time.Duration(n[2]) * time.Millisecond, MaxBackoff: time.Duration(n[3]) * time.Millisecond}, nil
}

// binding is what the claims signature binds besides the claims: the ID
// and a digest of every other field, so that no part of a stored task can
// be changed without the dispatcher refusing it.
func (t *task) binding() string {
	b := make([]byte, 0, 256+len(t.params))
	field := func(s string) {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
		b = append(b, '\n')
	}
	field("funcmesh-task-v1")
	field(t.service)
	field(t.function)
	field(t.contentType)
	b = strconv.AppendInt(b, int64(len(t.params)), 10)
	b = append(b, ':')
	b = append(b, t.params...)
	field(formatRetry(t.retry))
	field(strconv.FormatInt(t.enqueued.UnixMilli(), 10))
	field(t.requestID)
	field(t.schedule)
	field(t.overlap)
	if len(t.extra) > 0 {
		keys := make([]string, 0, len(t.extra))
		for k := range t.extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			field(k)
			field(strings.Join(t.extra[k], "\x00"))
		}
	}
	id := t.id
	if t.template != "" {
		id = t.template
	}
	sum := sha256.Sum256(b)
	return id + ":" + hex.EncodeToString(sum[:])
}

func (t *task) sign(s *transport.ClaimsSigner) {
	t.sig = s.Sign(t.claims, t.binding(), t.expires)
}

// verify checks the signature; expired signatures report
// transport.ErrClaimsExpired.
func (t *task) verify(s *transport.ClaimsSigner, now time.Time) error {
	return s.Verify(t.sig, t.claims, t.binding(), t.expires, now)
}

func (t *task) subject() string {
	return taskPrefix + t.service + "." + t.function + "." + t.id
}

func (t *task) header() nats.Header {
	h := make(nats.Header, 12+len(t.extra)) // room for what Enqueue adds
	for k, v := range t.extra {
		h[k] = v
	}
	h[hID] = []string{t.id}
	if t.claims != "" {
		h[hClaims] = []string{t.claims}
	}
	h[hSig] = []string{t.sig}
	h[hExpires] = []string{strconv.FormatInt(t.expires.UnixMilli(), 10)}
	h[hRequest] = []string{t.requestID}
	h[hRetry] = []string{formatRetry(t.retry)}
	h[hEnqueued] = []string{strconv.FormatInt(t.enqueued.UnixMilli(), 10)}
	if t.template != "" {
		h[hTickOf] = []string{t.template}
	}
	if t.schedule != "" {
		h[hSchedule] = []string{t.schedule}
	}
	if t.overlap != "" {
		h[hOverlap] = []string{t.overlap}
	}
	if t.contentType != "" {
		h[transport.HeaderContentType] = []string{t.contentType}
	}
	return h
}

// extraHeader reports whether a header of a stored task is one passed on
// to the function.
func extraHeader(name string) bool {
	l := strings.ToLower(name)
	return !strings.HasPrefix(l, "fm-") && !strings.HasPrefix(l, "nats-") &&
		!strings.HasPrefix(l, "mesh-") && l != "content-type"
}

// decodeTask reads a stored task (a task message or a dead letter).
func decodeTask(subject string, h nats.Header, data []byte) (*task, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 4 {
		return nil, fmt.Errorf("subject %q: want 4 tokens", subject)
	}
	t := &task{service: parts[1], function: parts[2], id: parts[3], params: data}
	if !ValidID(t.id) || h.Get(hID) != t.id {
		return nil, errors.New("task ID missing or not the subject's")
	}
	if err := errors.Join(transport.ValidateName(t.service), transport.ValidateName(t.function)); err != nil {
		return nil, err
	}
	t.claims, t.sig, t.requestID = h.Get(hClaims), h.Get(hSig), h.Get(hRequest)
	t.schedule, t.overlap = h.Get(hSchedule), h.Get(hOverlap)
	if tpl := h.Get(hTickOf); tpl != "" {
		if !ValidID(tpl) {
			return nil, errors.New("malformed tick header")
		}
		t.template = tpl
	}
	t.contentType = h.Get(transport.HeaderContentType)
	var err error
	if t.retry, err = parseRetry(h.Get(hRetry)); err != nil {
		return nil, err
	}
	ms := func(name string) (time.Time, error) {
		v, err := strconv.ParseInt(h.Get(name), 10, 64)
		if err != nil || v <= 0 {
			return time.Time{}, fmt.Errorf("header %s: want Unix milliseconds", name)
		}
		return time.UnixMilli(v), nil
	}
	if t.expires, err = ms(hExpires); err != nil {
		return nil, err
	}
	if t.enqueued, err = ms(hEnqueued); err != nil {
		return nil, err
	}
	for k, v := range h {
		if extraHeader(k) {
			if t.extra == nil {
				t.extra = nats.Header{}
			}
			t.extra[k] = v
		}
	}
	return t, nil
}

// splitKey splits an Options.Functions key, "service.function".
func splitKey(k string) (string, string, error) {
	svc, fn, ok := strings.Cut(k, ".")
	if !ok {
		return "", "", fmt.Errorf("key %q: want service.function", k)
	}
	if err := errors.Join(transport.ValidateName(svc), transport.ValidateName(fn)); err != nil {
		return "", "", fmt.Errorf("key %q: %w", k, err)
	}
	return svc, fn, nil
}
