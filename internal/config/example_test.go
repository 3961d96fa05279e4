package config

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// TestExampleFilesAreValid: the configuration files shipped as
// documentation parse strictly and pass validation.
func TestExampleFilesAreValid(t *testing.T) {
	for _, path := range []string{"../../config.example.toml", "../../deploy/systemwide.example.toml", "../../cmd/xpra-edge/dev.toml"} {
		c, err := Load(path)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		c.FillDefaults()
		for _, p := range c.Problems() {
			t.Errorf("%s: %v", path, p)
		}
	}
}

// TestExampleDocumentsEveryKey: config.example.toml shows every key the
// schema accepts ("key = ..." or "# key = ..."), so an option added to
// the code without documentation fails here.
func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	seen := map[reflect.Type]bool{}
	var walk func(typ reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if key == "" || key == "-" {
				continue
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration(0)) {
				// A table: "[key]", "[[key]]" or "[parent.key]", commented or not.
				if !regexp.MustCompile(`(?m)^#? ?\[\[?` + regexp.QuoteMeta(strings.TrimPrefix(path+"."+key, ".")) + `\]\]?`).MatchString(text) {
					t.Errorf("config.example.toml does not show the table [%s]", strings.TrimPrefix(path+"."+key, "."))
				}
				walk(ft, strings.TrimPrefix(path+"."+key, "."))
				continue
			}
			if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(key) + ` *=`).MatchString(text) {
				t.Errorf("config.example.toml does not show %s (in [%s])", key, path)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
}
