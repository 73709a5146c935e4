package connectplugin

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// TestHeaderFullyWrapped parses include/connectplugin.h and checks that every connectplugin_*
// function it declares is called from the package's Go source as C.connectplugin_xxx.
func TestHeaderFullyWrapped(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "include", "connectplugin.h"))
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(raw), " ")
	src = regexp.MustCompile(`//[^\n]*`).ReplaceAllString(src, " ")
	src = regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(src, " ")

	// Declarations end with ';' at file scope; function prototypes are "ret name(params);".
	protoRe := regexp.MustCompile(`\b(connectplugin_[a-z0-9_]+)\s*\(`)
	var funcs []string
	seen := map[string]bool{}
	for _, decl := range strings.Split(src, ";") {
		if strings.Contains(decl, "typedef") {
			continue
		}
		m := protoRe.FindStringSubmatch(decl)
		if m == nil || seen[m[1]] {
			continue
		}
		seen[m[1]] = true
		funcs = append(funcs, m[1])
	}
	sort.Strings(funcs)
	if len(funcs) < 60 {
		t.Fatalf("parsed only %d functions from the header; the parser is broken: %v", len(funcs), funcs)
	}

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var goSrc strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		goSrc.Write(b)
		goSrc.WriteByte('\n')
	}
	all := goSrc.String()
	var missing []string
	for _, fn := range funcs {
		if !regexp.MustCompile(`\bC\.` + fn + `\b`).MatchString(all) {
			missing = append(missing, fn)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d header functions are not wrapped (no C.<name> in the package): %s",
			len(missing), len(funcs), strings.Join(missing, ", "))
	}
	t.Logf("%d header functions, all referenced", len(funcs))
}
