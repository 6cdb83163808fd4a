package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// docFiles are the documents whose examples and links are tested.
var docFiles = []string{"README.md", "docs/design.md", "docs/guarantees.md", "docs/operations.md", "docs/benchmarks.md"}

// curlExample is one curl command of a document, as a shell runs it, and
// the lines the document says it prints (none: it is only run).
type curlExample struct {
	line int // in the document
	cmd  string
	want []string
}

// docCommands are the first words of the other commands in the documents'
// code blocks: such a line ends a curl example's output.
var docCommands = []string{"kvscli ", "kvsd ", "docker ", "export ", "grep ", "/tmp/", "go "}

// curlExamples returns the curl commands of the code blocks of text: an
// indented line that starts with "curl ", the lines indented deeper after
// it (its continuation), then the lines at its indentation that are not
// another command (what it prints).
func curlExamples(text string) []curlExample {
	var out []curlExample
	var cur *curlExample
	indent := 0
	for n, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		depth := len(line) - len(trimmed)
		switch {
		case depth >= 4 && strings.HasPrefix(trimmed, "curl "):
			out = append(out, curlExample{line: n + 1, cmd: trimmed})
			cur, indent = &out[len(out)-1], depth
		case cur == nil:
		case trimmed != "" && depth > indent && cur.want == nil:
			cur.cmd += "\n" + trimmed
		case trimmed != "" && depth == indent && !slices.ContainsFunc(docCommands, func(c string) bool { return strings.HasPrefix(trimmed, c) }):
			cur.want = append(cur.want, trimmed)
		default:
			cur = nil
		}
	}
	return out
}

func TestCurlExamplesParse(t *testing.T) {
	t.Parallel()
	doc := "Text\n\n    curl a -d '{\"x\":\n      1}'\n    {\"ok\":1}\n    kvscli get\n    out\n\n- item:\n\n      curl b\n    curl c | grep x\n"
	got := curlExamples(doc)
	want := []curlExample{
		{3, "curl a -d '{\"x\":\n1}'", []string{`{"ok":1}`}},
		{11, "curl b", nil},
		{12, "curl c | grep x", nil},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// docToken is the token the documents' examples send as $KVS_TOKEN.
const docToken = "a-token-for-the-documents-examples"

// docEnv is the servers one document's examples run against, each started
// when an example first names its address:
//   - 0.0.0.0:23333: a kvsd with the memory backend;
//   - localhost:23333 and localhost:23334: two kvsd sharing a Kafka topic;
//   - 127.0.0.1:23340: a kvsd with -pprof (the benchmarks' server);
//   - https://localhost:23333: a kvsd with a certificate (ca.pem in the
//     examples' directory) and the token.
type docEnv struct {
	t       *testing.T
	dir     string // where the examples run
	servers map[string]*kvstest.Server
}

// addr returns the address that stands for the document's address a.
func (e *docEnv) addr(a string) string {
	if s := e.servers[a]; s != nil {
		return s.Addr
	}
	var s *kvstest.Server
	switch a {
	case "0.0.0.0:23333":
		s = kvstest.Start(e.t, "-backend", "memory")
	case "127.0.0.1:23340":
		s = kvstest.Start(e.t, "-backend", "memory", "-pprof")
	case "https://localhost:23333":
		certs := kvstest.WriteCerts(e.t)
		ca, err := os.ReadFile(certs.CA)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, "ca.pem"), ca, 0o644); err != nil {
			e.t.Fatal(err)
		}
		s = kvstest.Start(e.t, "-backend", "memory", "-token", docToken, "-tls-cert", certs.Cert, "-tls-key", certs.Key)
		e.servers[a] = s
		return "https://" + s.Addr
	case "localhost:23333", "localhost:23334":
		b := startBroker(e.t, false)
		topic := newTopic()
		e.servers["localhost:23333"] = startKafkaKvsd(e.t, b, topic)
		e.servers["localhost:23334"] = startKafkaKvsd(e.t, b, topic)
		return e.servers[a].Addr
	default:
		e.t.Fatalf("no server for the address %s", a)
	}
	waitReady(e.t, s, 200)
	e.servers[a] = s
	return s.Addr
}

var docAddr = regexp.MustCompile(`(https://)?(0\.0\.0\.0|localhost|127\.0\.0\.1):233\d\d`)

// TestDocsCurl runs every curl example of the README and the docs as
// written, in order, with a shell, against servers for the addresses they
// name (a fresh set per document), and checks that each exits 0 and prints
// what the document shows.
func TestDocsCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("KVS_REQUIRE_CURL") != "" {
			t.Fatal("curl is not installed, and KVS_REQUIRE_CURL is set")
		}
		t.Skip("curl is not installed")
	}
	for _, file := range docFiles {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join("..", "..", file))
			if err != nil {
				t.Fatal(err)
			}
			env := &docEnv{t: t, dir: t.TempDir(), servers: map[string]*kvstest.Server{}}
			for _, ex := range curlExamples(string(b)) {
				cmd := docAddr.ReplaceAllStringFunc(ex.cmd, env.addr)
				sh := exec.Command("sh", "-c", cmd)
				sh.Dir, sh.Env = env.dir, append(os.Environ(), "KVS_TOKEN="+docToken)
				var stderr strings.Builder
				sh.Stderr = &stderr
				out, err := sh.Output()
				if err != nil {
					t.Errorf("%s:%d: %s: %v\n%s%s", file, ex.line, ex.cmd, err, out, stderr.String())
					continue
				}
				got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
				if ex.want != nil && !slices.Equal(got, ex.want) {
					t.Errorf("%s:%d: %s\nprinted: %q\ndocument: %q", file, ex.line, ex.cmd, got, ex.want)
				}
			}
		})
	}
}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsLinks checks every link of the README and the docs: it points
// into the repository, to a file that exists, and to a heading of it.
func TestDocsLinks(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	headings := map[string]map[string]bool{}
	anchors := func(file string) map[string]bool {
		if h, ok := headings[file]; ok {
			return h
		}
		h := map[string]bool{}
		b, _ := os.ReadFile(filepath.Join(root, file))
		for line := range strings.SplitSeq(string(b), "\n") {
			if title, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
				h[slug(title)] = true
			}
		}
		headings[file] = h
		return h
	}
	for _, file := range docFiles {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				t.Errorf("%s: link %s points outside the repository", file, target)
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.ToSlash(filepath.Join(filepath.Dir(file), path))
				if _, err := os.Stat(filepath.Join(root, dest)); err != nil {
					t.Errorf("%s: link %s: %v", file, target, err)
					continue
				}
			}
			if frag != "" && !anchors(dest)[frag] {
				t.Errorf("%s: link %s: %s has no heading #%s", file, target, dest, frag)
			}
		}
	}
}

// slug is the anchor GitHub gives a heading: lower case, spaces to
// hyphens, punctuation dropped.
func slug(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(title)) {
		switch {
		case r == ' ' || r == '-':
			b.WriteRune('-')
		case r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}
