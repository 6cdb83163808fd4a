package main

import (
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, c config)
	}{
		{"defaults for set", []string{"set"}, nil, func(t *testing.T, c config) {
			want := config{mode: "set", base: "http://127.0.0.1:23333", connections: 64, duration: 10 * time.Second,
				keys: 10000, valueSize: 16, readRatio: 0.9, timeout: 10 * time.Second, progress: time.Second,
				subscribers: 100, drain: 5 * time.Second, sweepP99: 50 * time.Millisecond,
				leases: 10000, ttl: 10 * time.Second, batch: 1000}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got %+v, want %+v", c, want)
			}
		}},
		{"flags before and after the mode", []string{"-c", "8", "get", "-keys", "50", "-json"}, nil, func(t *testing.T, c config) {
			if c.mode != "get" || c.connections != 8 || c.keys != 50 || !c.json {
				t.Errorf("got mode %q, connections %d, keys %d, json %v", c.mode, c.connections, c.keys, c.json)
			}
		}},
		{"local gets", []string{"get", "-consistency", "local"}, nil, func(t *testing.T, c config) {
			if !c.local {
				t.Error("got linearizable gets, want local ones")
			}
		}},
		{"get preloads the key space", []string{"get", "-keys", "50"}, nil, func(t *testing.T, c config) {
			if c.preload != 50 {
				t.Errorf("preload: got %d, want 50", c.preload)
			}
		}},
		{"mixed preloads the key space", []string{"mixed", "-keys", "70"}, nil, func(t *testing.T, c config) {
			if c.preload != 70 {
				t.Errorf("preload: got %d, want 70", c.preload)
			}
		}},
		{"explicit preload wins", []string{"get", "-preload", "0"}, nil, func(t *testing.T, c config) {
			if c.preload != 0 {
				t.Errorf("preload: got %d, want 0", c.preload)
			}
		}},
		{"set does not preload", []string{"set"}, nil, func(t *testing.T, c config) {
			if c.preload != 0 {
				t.Errorf("preload: got %d, want 0", c.preload)
			}
		}},
		{"total alone: no time limit", []string{"set", "-n", "500"}, nil, func(t *testing.T, c config) {
			if c.total != 500 || c.duration != 0 {
				t.Errorf("total, duration: got %d, %v, want 500, 0", c.total, c.duration)
			}
		}},
		{"total and duration", []string{"set", "-total", "500", "-duration", "3s"}, nil, func(t *testing.T, c config) {
			if c.total != 500 || c.duration != 3*time.Second {
				t.Errorf("total, duration: got %d, %v, want 500, 3s", c.total, c.duration)
			}
		}},
		{"fill runs until every key is written", []string{"fill"}, nil, func(t *testing.T, c config) {
			if c.duration != 0 || c.preload != 0 {
				t.Errorf("duration, preload: got %v, %d, want 0, 0", c.duration, c.preload)
			}
		}},
		{"watch defaults", []string{"watch"}, nil, func(t *testing.T, c config) {
			if c.connections != 4 || c.rate != 200 || c.subscribers != 100 || !strings.HasPrefix(c.prefix, "kvsbench-") || !strings.HasSuffix(c.prefix, "/") {
				t.Errorf("got connections %d, rate %v, subscribers %d, prefix %q; want 4, 200, 100, kvsbench-<random>/",
					c.connections, c.rate, c.subscribers, c.prefix)
			}
		}},
		{"watch with explicit values", []string{"watch", "-c", "2", "-rate", "50", "-key-prefix", "w/", "-subscribers", "1000"}, nil, func(t *testing.T, c config) {
			if c.connections != 2 || c.rate != 50 || c.prefix != "w/" || c.subscribers != 1000 {
				t.Errorf("got connections %d, rate %v, prefix %q, subscribers %d", c.connections, c.rate, c.prefix, c.subscribers)
			}
		}},
		{"sweep", []string{"watch", "-sweep", "100, 200,400"}, nil, func(t *testing.T, c config) {
			if !slices.Equal(c.sweep, []float64{100, 200, 400}) {
				t.Errorf("sweep: got %v, want [100 200 400]", c.sweep)
			}
		}},
		{"environment", []string{"set"}, map[string]string{"KVS_ADDRESS": "10.0.0.1:1", "KVS_TOKEN": "secret"}, func(t *testing.T, c config) {
			if c.base != "http://10.0.0.1:1" || c.token != "secret" {
				t.Errorf("base, token: got %q, %q", c.base, c.token)
			}
		}},
		{"flags win over the environment", []string{"-server-address", "https://h:2/base/", "-token", "t", "set"},
			map[string]string{"KVS_ADDRESS": "10.0.0.1:1", "KVS_TOKEN": "secret"}, func(t *testing.T, c config) {
				if c.base != "https://h:2/base" || c.token != "t" {
					t.Errorf("base, token: got %q, %q", c.base, c.token)
				}
			}},
		{"key size", []string{"fill", "-keys", "1000", "-key-size", "16"}, nil, func(t *testing.T, c config) {
			if c.keySize != 16 {
				t.Errorf("key size: got %d", c.keySize)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatalf("parseConfig(%q): %v", tt.args, err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string // in the message
	}{
		{"no mode", nil, "no mode"},
		{"unknown mode", []string{"frob"}, `unknown mode "frob"`},
		{"extra argument", []string{"set", "more"}, `unexpected argument "more"`},
		{"unknown flag", []string{"set", "-frob"}, "frob"},
		{"zero connections", []string{"set", "-c", "0"}, "-connections"},
		{"no limit", []string{"set", "-d", "0"}, "-duration or -total"},
		{"read ratio", []string{"mixed", "-read-ratio", "1.5"}, "-read-ratio"},
		{"sweep outside watch", []string{"set", "-sweep", "1,2"}, "-sweep is for watch"},
		{"bad sweep", []string{"watch", "-sweep", "1,x"}, "-sweep"},
		{"bad consistency", []string{"get", "-consistency", "stale"}, "-consistency"},
		{"key size too small", []string{"set", "-keys", "100000", "-key-size", "4"}, "-key-size 4: too small"},
		{"quote in the prefix", []string{"set", "-key-prefix", `a"b`}, "-key-prefix"},
		{"key too long", []string{"set", "-key-size", "2000"}, "1024"},
		{"bad address", []string{"-server-address", "ftp://x", "set"}, "-server-address"},
		{"no subscribers", []string{"watch", "-subscribers", "0"}, "-subscribers"},
		{"missing CA file", []string{"-cacert", "/nonexistent/ca.pem", "set"}, "-cacert"},
		{"CA file without a certificate", []string{"-cacert", "config_test.go", "set"}, "no PEM certificate"},
		{"help", []string{"-h"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseConfig(tt.args, func(string) string { return "" }, io.Discard)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("parseConfig(%q): got %v, want a usage error", tt.args, err)
			}
			if !strings.Contains(ue.msg, tt.want) {
				t.Errorf("got %q, want it to mention %q", ue.msg, tt.want)
			}
		})
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"127.0.0.1:23333", "http://127.0.0.1:23333"},
		{"localhost:1", "http://localhost:1"},
		{"localhost", "http://localhost:23333"},
		{"http://127.0.0.1:1/", "http://127.0.0.1:1"},
		{"https://kvs.example:443/v1/", "https://kvs.example:443/v1"},
	}
	for _, tt := range tests {
		c, err := parseConfig([]string{"-server-address", tt.in, "set"}, func(string) string { return "" }, io.Discard)
		if err != nil || c.base != tt.want {
			t.Errorf("-server-address %q: got %q, %v, want %q", tt.in, c.base, err, tt.want)
		}
	}
	for _, bad := range []string{"ftp://x:1", "http://", "http://h:1/?q=1"} {
		_, err := parseConfig([]string{"-server-address", bad, "set"}, func(string) string { return "" }, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("-server-address %q: got %v, want a usage error", bad, err)
		}
	}
}
