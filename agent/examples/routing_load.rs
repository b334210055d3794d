//! Load generator for `tests/bench/forward.sh`: servers on one side, clients on the other,
//! each printing one number so the script can put a forwarder (agent or socat) in between.
//!
//!     routing_load sink ADDR            TCP: read to EOF, close (throughput target)
//!     routing_load echo ADDR            TCP: echo everything (rate and latency target)
//!     routing_load udp-echo ADDR        UDP: echo datagrams
//!     routing_load throughput ADDR MIB  -> MiB/s
//!     routing_load rate ADDR SECS       -> short connections/s (connect, 1 byte each way, close)
//!     routing_load latency ADDR N       -> "p50_us p99_us" of 1-byte round trips
//!     routing_load udp ADDR SECS        -> datagrams/s round trips (64 bytes, 32 in flight)

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_else(|| usage());
    match arg(0).as_str() {
        "sink" => serve(&arg(1), |mut s| {
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }),
        "echo" => serve(&arg(1), |mut s| {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }),
        "udp-echo" => {
            let s = UdpSocket::bind(arg(1)).expect("bind");
            let mut buf = vec![0u8; 65536];
            loop {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        }
        "throughput" => {
            let mib: usize = arg(2).parse().unwrap_or_else(|_| usage());
            let buf = vec![0x5au8; 1024 * 1024];
            let start = Instant::now();
            let mut s = TcpStream::connect(arg(1)).expect("connect");
            for _ in 0..mib {
                s.write_all(&buf).expect("write");
            }
            s.shutdown(Shutdown::Write).expect("shutdown");
            // The sink closes after reading everything: EOF here means all bytes arrived.
            let _ = s.read(&mut [0u8; 1]);
            println!("{:.1}", mib as f64 / start.elapsed().as_secs_f64());
        }
        "rate" => {
            let secs: f64 = arg(2).parse().unwrap_or_else(|_| usage());
            let end = Instant::now() + Duration::from_secs_f64(secs);
            let start = Instant::now();
            let mut n = 0u64;
            while Instant::now() < end {
                let mut s = TcpStream::connect(arg(1)).expect("connect");
                s.write_all(b"x").expect("write");
                let mut b = [0u8; 1];
                s.read_exact(&mut b).expect("read");
                n += 1;
            }
            println!("{:.0}", n as f64 / start.elapsed().as_secs_f64());
        }
        "latency" => {
            let count: usize = arg(2).parse().unwrap_or_else(|_| usage());
            let mut s = TcpStream::connect(arg(1)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            let mut samples = Vec::with_capacity(count);
            let mut b = [0u8; 1];
            for _ in 0..count {
                let t = Instant::now();
                s.write_all(b"x").expect("write");
                s.read_exact(&mut b).expect("read");
                samples.push(t.elapsed().as_nanos() as u64);
            }
            samples.sort_unstable();
            let pct = |p: f64| {
                samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64
                    / 1000.0
            };
            println!("{:.1} {:.1}", pct(0.50), pct(0.99));
        }
        "udp" => {
            let secs: f64 = arg(2).parse().unwrap_or_else(|_| usage());
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.connect(arg(1)).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let payload = [0x42u8; 64];
            let mut buf = [0u8; 2048];
            let window = 32;
            for _ in 0..window {
                s.send(&payload).expect("send");
            }
            let start = Instant::now();
            let end = start + Duration::from_secs_f64(secs);
            let mut n = 0u64;
            while Instant::now() < end {
                // On a timeout (a lost datagram) the send below refills the window.
                if s.recv(&mut buf).is_ok() {
                    n += 1;
                }
                let _ = s.send(&payload);
            }
            println!("{:.0}", n as f64 / start.elapsed().as_secs_f64());
        }
        _ => usage(),
    }
}

fn serve(addr: &str, handle: fn(TcpStream)) {
    let l = TcpListener::bind(addr).expect("bind");
    for s in l.incoming().flatten() {
        std::thread::spawn(move || handle(s));
    }
}

fn usage() -> ! {
    eprintln!("see the header of agent/examples/routing_load.rs for usage");
    std::process::exit(2);
}
