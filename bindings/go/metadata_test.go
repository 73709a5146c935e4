package connectplugin

import "testing"

func TestMetadataList(t *testing.T) {
	l, err := NewMetadataList()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Len() != 0 {
		t.Fatal("new list not empty")
	}
	for _, kv := range [][2]string{{"X-Key", "one"}, {"x-key", "two"}, {"other", ""}, {"data-bin", string(binValue)}} {
		if err := l.Add(kv[0], []byte(kv[1])); err != nil {
			t.Fatalf("Add(%q): %v", kv[0], err)
		}
	}
	for _, bad := range [][2]string{{"", "v"}, {"bad key", "v"}, {"x", "tab\there"}, {"x", "caf\xc3\xa9"}, {"nul\x00key", "v"}} {
		err := l.Add(bad[0], []byte(bad[1]))
		if err == nil {
			t.Fatalf("Add(%q, %q) accepted", bad[0], bad[1])
		}
		if e := asError(t, err); e.Status != StatusInvalidArgument {
			t.Fatalf("Add(%q, %q): status %v", bad[0], bad[1], e.Status)
		}
	}
	if l.Len() != 4 {
		t.Fatalf("Len = %d", l.Len())
	}
	md := l.Entries()
	if md[0].Key != "x-key" || string(md[0].Value) != "one" || md[1].Key != "x-key" || string(md[1].Value) != "two" {
		t.Fatalf("entries %v: keys must be lowercased and order kept", md)
	}
	if v, ok := l.Lookup("X-KEY"); !ok || string(v) != "one" {
		t.Fatalf("Lookup(X-KEY) = %q, %v", v, ok)
	}
	if v, ok := l.Lookup("other"); !ok || len(v) != 0 {
		t.Fatalf("Lookup(other) = %q, %v", v, ok)
	}
	if v, ok := l.Lookup("data-bin"); !ok || string(v) != string(binValue) {
		t.Fatalf("Lookup(data-bin) = %q, %v", v, ok)
	}
	if _, ok := l.Lookup("absent"); ok {
		t.Fatal("Lookup(absent) found something")
	}
	if got := md.Values("X-Key"); len(got) != 2 || string(got[1]) != "two" {
		t.Fatalf("Values = %q", got)
	}
	if md.Get("OTHER") != "" {
		t.Fatal("Get(OTHER)")
	}
	if _, ok := md.Lookup("other"); !ok {
		t.Fatal("Metadata.Lookup(other)")
	}
	l.Close()
	l.Close()
	if l.Len() != 0 {
		t.Fatal("Len after Close")
	}
	if err := l.Add("k", []byte("v")); err == nil {
		t.Fatal("Add after Close succeeded")
	}
}
