package main_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// readmeAddr is the server address in the README's examples; the test
// runs them against its own kvsd instead.
const readmeAddr = "0.0.0.0:23333"

// readmeCommand is one command of the README with what it prints.
type readmeCommand struct {
	line           string // as written
	args           []string
	code           int
	stdout, stderr []string // lines; stderr lines are those that start with "kvscli: "
}

var exitComment = regexp.MustCompile(`\s+# exit (\d+)$`)

// readmeBlocks returns the code blocks of the "## kvscli" section of the
// README, each a list of commands.
func readmeBlocks(t *testing.T) [][]readmeCommand {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## kvscli\n")
	if start < 0 {
		t.Fatal(`README.md has no "## kvscli" section`)
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var blocks [][]readmeCommand
	var cur []readmeCommand
	inBlock := false
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "    ") {
			if inBlock {
				blocks = append(blocks, cur)
				cur, inBlock = nil, false
			}
			continue
		}
		inBlock = true
		line = line[4:]
		switch {
		case strings.HasPrefix(line, "kvscli "):
			c := readmeCommand{line: line}
			if m := exitComment.FindStringSubmatch(line); m != nil {
				c.code, _ = strconv.Atoi(m[1])
				line = line[:len(line)-len(m[0])]
			}
			words, err := shellWords(line)
			if err != nil {
				t.Fatalf("README: %q: %v", c.line, err)
			}
			c.args = words[1:]
			cur = append(cur, c)
		case len(cur) == 0:
			t.Fatalf("README: output %q before any command", line)
		case strings.HasPrefix(line, "kvscli: "):
			cur[len(cur)-1].stderr = append(cur[len(cur)-1].stderr, line)
		default:
			cur[len(cur)-1].stdout = append(cur[len(cur)-1].stdout, line)
		}
	}
	if inBlock {
		blocks = append(blocks, cur)
	}
	return blocks
}

// shellWords splits a command line as a POSIX shell does, for the quoting
// the README uses: '...', "..." with \" and \\, and backslash escapes.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, strconv.ErrSyntax
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, strconv.ErrSyntax
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{`kvscli get --key "Name"`, []string{"kvscli", "get", "--key", "Name"}},
		{`a  'b c' "d \"e\"" f\ g ''`, []string{"a", "b c", `d "e"`, "f g", ""}},
		{`--value '{"retries": 3}'`, []string{"--value", `{"retries": 3}`}},
	}
	for _, tt := range tests {
		got, err := shellWords(tt.in)
		if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("shellWords(%q): got %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestREADME runs the examples of the README's kvscli section as written,
// in order, against a fresh kvsd (for the address 0.0.0.0:23333), and
// checks what each prints and its exit code. A watch (or a lease
// keepalive, which runs until Ctrl-C too), the last command of its block,
// runs while the block after it does; then it gets Ctrl-C (SIGINT) and
// must exit 0.
func TestREADME(t *testing.T) {
	blocks := readmeBlocks(t)
	var all []string
	for _, b := range blocks {
		for _, c := range b {
			all = append(all, c.line)
		}
	}
	// The original project's commands must be among the examples, as written.
	for _, orig := range []string{
		`kvscli --server-address 0.0.0.0:23333 get --all`,
		`kvscli --server-address 0.0.0.0:23333 get --key "Name"`,
		`kvscli --server-address 0.0.0.0:23333 set --key "City" --value "Bangalore"`,
		`kvscli --server-address 0.0.0.0:23333 watch`,
	} {
		found := false
		for _, l := range all {
			found = found || l == orig
		}
		if !found {
			t.Errorf("README's kvscli section lacks the original command %s", orig)
		}
	}

	srv := kvstest.Start(t, "-backend", "memory")
	fix := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = strings.ReplaceAll(a, readmeAddr, srv.Addr)
		}
		return out
	}
	lines := func(s string) []string {
		s = strings.ReplaceAll(s, srv.Addr, readmeAddr)
		if s == "" {
			return nil
		}
		return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	}
	check := func(c readmeCommand, code int, stdout, stderr []string) {
		t.Helper()
		if code != c.code {
			t.Errorf("%s: exit code %d, README says %d", c.line, code, c.code)
		}
		if strings.Join(stdout, "\n") != strings.Join(c.stdout, "\n") {
			t.Errorf("%s: stdout\n%s\nREADME says\n%s", c.line, strings.Join(stdout, "\n"), strings.Join(c.stdout, "\n"))
		}
		if strings.Join(stderr, "\n") != strings.Join(c.stderr, "\n") {
			t.Errorf("%s: stderr\n%s\nREADME says\n%s", c.line, strings.Join(stderr, "\n"), strings.Join(c.stderr, "\n"))
		}
	}
	runsUntilInterrupted := func(c readmeCommand) bool {
		line := " " + strings.Join(c.args, " ") + " "
		return strings.Contains(line, " watch ") || strings.Contains(line, " lease keepalive ") && !strings.Contains(line, "-once ")
	}

	var watch *proc
	var watchCmd readmeCommand
	finish := func() {
		if watch == nil {
			return
		}
		watch.waitLines(len(watchCmd.stdout))
		code := watch.interrupt()
		check(watchCmd, code, lines(strings.Join(watch.Lines(), "\n")), lines(watch.Stderr()))
		watch = nil
	}
	for _, b := range blocks {
		cmds := b
		long := runsUntilInterrupted(b[len(b)-1])
		if long {
			cmds = b[:len(b)-1]
		}
		for _, c := range cmds {
			r := kvscli(t, nil, fix(c.args)...)
			check(c, r.code, lines(r.stdout), lines(r.stderr))
		}
		finish()
		if long {
			watchCmd = b[len(b)-1]
			watch = startCLI(t, nil, fix(watchCmd.args)...)
			watch.waitStderr("(Ctrl-C to stop)", 1)
		}
	}
	finish()
	if len(all) < 10 {
		t.Errorf("README's kvscli section: %d commands found, want at least 10", len(all))
	}
}
