// Package s3test starts a real S3-compatible server (MinIO) on the
// loopback address for estkit's object storage tests: no mocks. The
// binary is built by `make minio` into .cache/bin (from the Go module
// proxy); ESTKIT_MINIO names another. A test skips, saying why, when the
// binary is absent, unless ESTKIT_REQUIRE_MINIO is set (make test sets
// it), when it fails.
package s3test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/estkit/estkit/internal/store"
)

// Credentials of the test server.
const (
	User     = "estkit-test"
	Password = "estkit-test-secret"
)

// Server is a running MinIO.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Client   *minio.Client
	cmd      *exec.Cmd
	exited   chan error
	dataDir  string
	port     int
}

// binary finds the MinIO binary: ESTKIT_MINIO, else .cache/bin/minio of
// the module root.
func binary() string {
	if p := os.Getenv("ESTKIT_MINIO"); p != "" {
		return p
	}
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache", "bin", "minio")
		}
		up := filepath.Dir(dir)
		if up == dir {
			return ""
		}
		dir = up
	}
}

// Start starts MinIO on a free loopback port with an empty data
// directory, points estkit's environment at it (ESTKIT_S3_ENDPOINT,
// path-style, the credentials) for the test, and stops it at the test's
// end.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary()
	if _, err := os.Stat(bin); bin == "" || err != nil {
		if os.Getenv("ESTKIT_REQUIRE_MINIO") != "" {
			t.Fatalf("MinIO binary %q is missing and ESTKIT_REQUIRE_MINIO is set: run make minio", bin)
		}
		t.Skipf("MinIO binary %q is missing (make minio builds it; make test requires it): object storage tests skipped", bin)
	}
	s := &Server{dataDir: t.TempDir(), port: freePort(t)}
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(s.port)
	s.start(t)
	t.Cleanup(func() { s.Stop() })
	t.Setenv(store.EnvEndpoint, s.Endpoint)
	t.Setenv(store.EnvPathStyle, "1")
	t.Setenv(store.EnvRegion, "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", Password)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(s.dataDir, "no-credentials-file"))
	c, err := minio.New("127.0.0.1:"+strconv.Itoa(s.port), &minio.Options{Creds: credentials.NewStaticV4(User, Password, ""), Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	s.Client = c
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	cmd := exec.Command(binary(), "server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:0", s.dataDir)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+User, "MINIO_ROOT_PASSWORD="+Password,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off")
	log, err := os.Create(filepath.Join(t.TempDir(), "minio.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start MinIO: %v", err)
	}
	s.cmd = cmd
	exited := make(chan error, 1)
	s.exited = exited
	go func() { exited <- cmd.Wait() }()
	// ready when its health endpoint answers; a bounded number of polls
	for i := 0; ; i++ {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("MinIO exited at start (%v):\n%s", err, b)
		default:
		}
		resp, err := http.Get(s.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i == 600 {
			s.Stop()
			t.Fatalf("MinIO at %s not ready after %d polls", s.Endpoint, i)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server (its data stays for Restart).
func (s *Server) Stop() {
	if s.cmd != nil {
		s.cmd.Process.Kill() // the process this Server started, by its own handle
		<-s.exited
		s.cmd = nil
	}
}

// Restart starts the server again, on its port with its data (after Stop,
// or stopping it first). Call it from the test's goroutine.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// Bucket creates a bucket and returns its s3:// URL with prefix.
func (s *Server) Bucket(t testing.TB, name, prefix string) string {
	t.Helper()
	if err := s.Client.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return fmt.Sprintf("s3://%s/%s", name, prefix)
}

// RemovePrefix deletes every object under prefix in bucket (benchmarks
// remove what an iteration wrote, so that the server's disk does not grow
// with b.N).
func (s *Server) RemovePrefix(t testing.TB, bucket, prefix string) {
	t.Helper()
	ctx := context.Background()
	for o := range s.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s/%s: %v", bucket, prefix, o.Err)
		}
		if err := s.Client.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("remove %s/%s: %v", bucket, o.Key, err)
		}
	}
}
