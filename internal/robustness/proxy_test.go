package robustness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaProxy is a TCP proxy between one kvsd and the Kafka broker that can
// cut the connections for a while and slow what the broker sends. It reads
// enough of the Kafka protocol to put its own address in place of the
// broker's in Metadata answers, so that the kvsd behind it reaches the
// broker only through it.
type kafkaProxy struct {
	ln     net.Listener
	broker string
	host   string
	port   int32

	// mu guards the fields below.
	mu    sync.Mutex
	conns map[net.Conn]struct{} // both ends of every proxied connection
	held  []net.Conn            // accepted while cut with hold
	down  bool                  // cut: new connections are refused or held
	hold  bool
	delay time.Duration // added to each answer of the broker
	wg    sync.WaitGroup
}

// newKafkaProxy starts a proxy to broker on a free 127.0.0.1 port; it is
// closed at the end of the test.
func newKafkaProxy(t testing.TB, broker string) *kafkaProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p32, _ := strconv.Atoi(port)
	p := &kafkaProxy{ln: ln, broker: broker, host: host, port: int32(p32), conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *kafkaProxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection; until heal, new connections are refused
// (closed at once) or, with hold, accepted and left without an answer.
func (p *kafkaProxy) cut(hold bool) {
	p.mu.Lock()
	p.down, p.hold = true, hold
	conns := p.conns
	p.conns = make(map[net.Conn]struct{})
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// heal lets connections through again, and closes the held ones.
func (p *kafkaProxy) heal() {
	p.mu.Lock()
	p.down = false
	held := p.held
	p.held = nil
	p.mu.Unlock()
	for _, c := range held {
		c.Close()
	}
}

// setDelay delays each answer of the broker by d from now on.
func (p *kafkaProxy) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

func (p *kafkaProxy) close() {
	p.ln.Close()
	p.cut(false)
	p.heal()
	p.wg.Wait()
}

func (p *kafkaProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, hold := p.down, p.hold
		if down && hold {
			p.held = append(p.held, c)
		}
		p.mu.Unlock()
		if down {
			if !hold {
				c.Close()
			}
			continue
		}
		b, err := net.DialTimeout("tcp", p.broker, 3*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.down { // cut meanwhile
			p.mu.Unlock()
			c.Close()
			b.Close()
			continue
		}
		p.conns[c], p.conns[b] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pc := &proxyConn{p: p, client: c, broker: b, metadata: make(map[int32]int16)}
		p.wg.Add(2)
		go pc.requests()
		go pc.answers()
	}
}

// proxyConn is one proxied connection.
type proxyConn struct {
	p              *kafkaProxy
	client, broker net.Conn
	// mu guards metadata: the versions of the Metadata requests in
	// flight, by correlation id.
	mu       sync.Mutex
	metadata map[int32]int16
}

func (pc *proxyConn) end() {
	pc.client.Close()
	pc.broker.Close()
	pc.p.mu.Lock()
	delete(pc.p.conns, pc.client)
	delete(pc.p.conns, pc.broker)
	pc.p.mu.Unlock()
}

// requests copies requests from kvsd to the broker, noting the Metadata
// ones.
func (pc *proxyConn) requests() {
	defer pc.p.wg.Done()
	defer pc.end()
	for {
		frame, err := readFrame(pc.client)
		if err != nil {
			return
		}
		if len(frame) >= 12 && int16(binary.BigEndian.Uint16(frame[4:])) == int16(kmsg.Metadata) {
			pc.mu.Lock()
			pc.metadata[int32(binary.BigEndian.Uint32(frame[8:]))] = int16(binary.BigEndian.Uint16(frame[6:]))
			pc.mu.Unlock()
		}
		if _, err := pc.broker.Write(frame); err != nil {
			return
		}
	}
}

// answers copies answers from the broker to kvsd, each after the delay,
// with the proxy's address in Metadata answers.
func (pc *proxyConn) answers() {
	defer pc.p.wg.Done()
	defer pc.end()
	for {
		frame, err := readFrame(pc.broker)
		if err != nil {
			return
		}
		arrived := time.Now()
		if len(frame) >= 8 {
			corr := int32(binary.BigEndian.Uint32(frame[4:]))
			pc.mu.Lock()
			version, ok := pc.metadata[corr]
			delete(pc.metadata, corr)
			pc.mu.Unlock()
			if ok {
				if frame, err = pc.p.rewriteMetadata(frame, version); err != nil {
					return
				}
			}
		}
		pc.p.mu.Lock()
		delay := pc.p.delay
		pc.p.mu.Unlock()
		if wait := time.Until(arrived.Add(delay)); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := pc.client.Write(frame); err != nil {
			return
		}
	}
}

// readFrame reads one size-prefixed Kafka frame, size included.
func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 256<<20 {
		return nil, fmt.Errorf("kafka frame of %d bytes", n)
	}
	frame := make([]byte, 4+n)
	copy(frame, size[:])
	_, err := io.ReadFull(r, frame[4:])
	return frame, err
}

// rewriteMetadata returns the Metadata answer frame with every broker's
// address replaced by the proxy's.
func (p *kafkaProxy) rewriteMetadata(frame []byte, version int16) ([]byte, error) {
	resp := kmsg.NewPtrMetadataResponse()
	resp.SetVersion(version)
	head := 8 // size and correlation id
	if resp.IsFlexible() {
		// The answer header's tagged fields.
		n, used := binary.Uvarint(frame[head:])
		if used <= 0 {
			return nil, errors.New("bad tagged fields")
		}
		head += used
		for range n {
			_, u1 := binary.Uvarint(frame[head:])
			size, u2 := binary.Uvarint(frame[head+max(u1, 0):])
			if u1 <= 0 || u2 <= 0 {
				return nil, errors.New("bad tagged field")
			}
			head += u1 + u2 + int(size)
		}
	}
	if err := resp.ReadFrom(frame[head:]); err != nil {
		return nil, fmt.Errorf("metadata answer v%d: %w", version, err)
	}
	for i := range resp.Brokers {
		resp.Brokers[i].Host, resp.Brokers[i].Port = p.host, p.port
	}
	out := resp.AppendTo(append([]byte(nil), frame[:head]...))
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	return out, nil
}
