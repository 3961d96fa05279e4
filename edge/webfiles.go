package edge

import (
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// webFiles serves a directory without what http.FileServer adds: no
// directory listings (a directory is its index.html or nothing), no dot
// files, and no symlink that leads out of the root, except to the files
// the root's own links point at under AllowedLinkDirs when it is loaded
// (Debian's xpra www links jquery and friends into /usr/share/javascript;
// a link planted later is not followed).
type webFiles struct {
	root    string          // the root, symlinks resolved
	allowed map[string]bool // resolved files out of the root that may be served
}

// AllowedLinkDirs are where a web root's symlinks may lead (Debian's
// packaged javascript libraries).
var AllowedLinkDirs = []string{"/usr/share/javascript"}

// maxWebWalk bounds the startup walk that finds the root's symlinks.
const maxWebWalk = 20000

func newWebFiles(root string) (*webFiles, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	wf := &webFiles{root: real, allowed: map[string]bool{}}
	n := 0
	_ = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if n++; n > maxWebWalk {
			return filepath.SkipAll
		}
		if d.Type()&fs.ModeSymlink == 0 {
			return nil
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil || within(target, real) || !underAny(target, AllowedLinkDirs) {
			return nil
		}
		if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
			wf.allowed[target] = true
		}
		return nil
	})
	return wf, nil
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator))
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if within(p, filepath.Clean(d)) {
			return true
		}
	}
	return false
}

func (wf *webFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	upath := r.URL.Path
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath
	}
	clean := path.Clean(upath)
	for _, seg := range strings.Split(clean, "/") {
		if strings.HasPrefix(seg, ".") {
			http.NotFound(w, r)
			return
		}
	}
	real, fi, ok := wf.resolve(clean)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if fi.IsDir() {
		if !strings.HasSuffix(upath, "/") {
			target := path.Base(clean) + "/"
			if q := r.URL.RawQuery; q != "" {
				target += "?" + q
			}
			http.Redirect(w, r, (&url.URL{Path: target}).String(), http.StatusMovedPermanently)
			return
		}
		if real, fi, ok = wf.resolve(path.Join(clean, "index.html")); !ok || fi.IsDir() {
			http.NotFound(w, r) // no listings
			return
		}
	}
	f, err := os.Open(real)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// resolve maps a clean URL path to a file in the root (or an allowed link
// target) and its info.
func (wf *webFiles) resolve(clean string) (string, os.FileInfo, bool) {
	full := filepath.Join(wf.root, filepath.FromSlash(clean))
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		return "", nil, false
	}
	if !within(real, wf.root) && !wf.allowed[real] {
		return "", nil, false
	}
	fi, err := os.Stat(real)
	if err != nil || !(fi.Mode().IsRegular() || fi.IsDir()) {
		return "", nil, false
	}
	return real, fi, true
}
