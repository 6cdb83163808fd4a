package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestComposeConfig validates compose.yaml with docker-compose config -q
// (offline: nothing is pulled or built). CI installs docker-compose; where
// it is missing the test is skipped.
func TestComposeConfig(t *testing.T) {
	dc, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed (apt-get install --no-install-recommends docker-compose)")
	}
	cmd := exec.Command(dc, "-f", filepath.Join("..", "..", "compose.yaml"), "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config -q: %v\n%s", err, out)
	}
}

// TestDockerfile checks what no build can check here (nothing can build
// images on these machines): a multi-stage build of both binaries with
// CGO_ENABLED=0 and -trimpath, onto a distroless static base, as a
// non-root user, with the data in a volume.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^FROM golang:\S+ AS build$`,
		`CGO_ENABLED=0 go build -trimpath .* \./cmd/kvsd \./kvscli`,
		`(?m)^FROM gcr\.io/distroless/static\S*:nonroot$`,
		`(?m)^COPY --from=build /out/kvsd /out/kvscli `,
		`(?m)^USER nonroot`,
		`(?m)^VOLUME /data$`,
		`(?m)^ENV .*KVS_DATA=/data`,
		`(?m)^ENTRYPOINT \["/usr/local/bin/kvsd"\]$`,
	} {
		if !regexp.MustCompile(want).Match(b) {
			t.Errorf("Dockerfile: no line matches %s", want)
		}
	}
}
