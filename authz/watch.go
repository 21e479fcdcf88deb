package authz

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDelay is how long the watcher waits after a change for more
// changes before it reloads, so that an editor's burst of writes (or a
// Kubernetes ConfigMap's symlink swap) makes one reload.
const watchDelay = 100 * time.Millisecond

// watcher reloads an Authorizer when the files its policy comes from
// change. It watches every directory of a Files path (recursively, adding
// new subdirectories after each reload) and the directory holding each
// file path, since editors and ConfigMaps replace files rather than write
// them in place.
type watcher struct {
	a     *Authorizer
	fw    *fsnotify.Watcher
	roots []string // the Files and RulesFile paths
	done  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func startWatcher(a *Authorizer) (*watcher, error) {
	w := &watcher{a: a, done: make(chan struct{})}
	for _, s := range a.cfg.sources {
		if p := watchedPath(s); p != "" {
			w.roots = append(w.roots, p)
		}
	}
	if len(w.roots) == 0 {
		return nil, errors.New("authz: WithWatch: no Files or RulesFile path to watch")
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("authz: WithWatch: %w", err)
	}
	w.fw = fw
	if err := w.addAll(); err != nil {
		fw.Close()
		return nil, err
	}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// addAll watches the directories of every root.
func (w *watcher) addAll() error {
	var errs []error
	for _, root := range w.roots {
		info, err := os.Stat(root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !info.IsDir() {
			errs = append(errs, w.fw.Add(filepath.Dir(root)))
			continue
		}
		errs = append(errs, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if path != root && strings.HasPrefix(d.Name(), ".") && !strings.HasPrefix(d.Name(), "..") {
				return filepath.SkipDir // hidden, as the loader skips it; ..data is a ConfigMap's
			}
			return w.fw.Add(path)
		}))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("authz: WithWatch: %w", err)
	}
	return nil
}

func (w *watcher) run() {
	defer w.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(watchDelay)
		case err, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			// Events may have been lost (a queue overflow): reload to be
			// sure the policy in use is the one on disk.
			if l := w.a.cfg.logger; l != nil {
				l.Warn("authz: watching policy files", slog.Any("error", err))
			}
			timer.Reset(watchDelay)
		case <-timer.C:
			// Watch new directories before reading them: a change made
			// after this is an event, one made before it is read now.
			if err := w.addAll(); err != nil && w.a.cfg.logger != nil {
				w.a.cfg.logger.Warn("authz: watching policy files", slog.Any("error", err))
			}
			_ = w.a.reload(context.Background(), true) // reported through the hook and logger
		}
	}
}

func (w *watcher) close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		err = w.fw.Close()
		w.wg.Wait()
	})
	return err
}
