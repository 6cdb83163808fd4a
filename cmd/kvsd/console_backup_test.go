package main_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	kvsclient "github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/wire"
)

// TestConsoleBackup checks the console's "download backup" link against
// the real kvsd with a token: hidden until the user has logged in, then a
// download of a whole backup at the server's revision, authorized by the
// login cookie.
func TestConsoleBackup(t *testing.T) {
	b := startBrowser(t)
	const token = "0123456789abcdef-console"
	srv := kvstest.Start(t, "-backend", "memory", "-token", token)
	c, err := kvsclient.New(srv.Addr, kvsclient.Options{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"City", `"Mumbai"`}, {"cfg", `{"retries":3}`}, {"City", `"Pune"`}} {
		if _, err := c.Set(t.Context(), kv[0], []byte(kv[1]), nil); err != nil {
			t.Fatal(err)
		}
	}
	downloads := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
	}); err != nil {
		t.Fatalf("allowing downloads: %v", err)
	}

	b.open(srv.URL + "/")
	b.waitFor("the login form", `!document.getElementById('login').hidden && document.body.dataset.state === 'login'`)
	if b.str(`String(document.getElementById('backup').hidden)`) != "true" {
		t.Fatal("the backup link shows before the login")
	}
	b.typeInto("token", token)
	b.click("Log in", `#login-form button`)
	b.waitFor("the page to go live", `document.body.dataset.state === 'live'`)
	b.waitFor("the backup link", `!document.getElementById('backup').hidden`)
	b.click("download backup", `#backup`)

	// Chromium writes the download under a temporary name, then renames it.
	var file string
	for deadline := time.Now().Add(hangGuard); file == ""; time.Sleep(50 * time.Millisecond) {
		des, _ := os.ReadDir(downloads)
		for _, de := range des {
			if strings.HasSuffix(de.Name(), ".snap") {
				file = filepath.Join(downloads, de.Name())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no download in %v: %v%s", hangGuard, des, b.dump())
		}
	}
	if filepath.Base(file) != "kvs-backup-3.snap" {
		t.Errorf("downloaded %s, want kvs-backup-3.snap", filepath.Base(file))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, es := backupEntries(t, data)
	if len(es) != 2 || es[0].Key != "City" || string(es[0].Value) != `"Pune"` || es[0].Version != 2 || es[1].Key != "cfg" {
		t.Fatalf("the downloaded backup holds %+v", es)
	}
	if _, err := wire.VerifyBackup(strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	b.checkClean()
}
