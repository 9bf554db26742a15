//! A bounded loopback load generator for the service benchmark (`tools/bench/run_serve_bench.py`):
//! `clients` threads, each posting files in turn over its own keep-alive connection, until
//! `requests` requests in all have been answered or `max_s` seconds have passed. Prints one
//! JSON object: requests, errors, faces/s, p50/p99 latency in ms.
//!
//! `cargo run --release -p fsvfm-serve --example loadgen -- ADDR PATH CLIENTS REQUESTS MAX_S FILE...`
//! (ADDR must be a loopback address: this tool never loads anything else.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 6 {
        eprintln!("usage: loadgen ADDR PATH CLIENTS REQUESTS MAX_S FILE...");
        std::process::exit(2);
    }
    let addr: SocketAddr = a[0].parse().expect("ADDR: ip:port");
    assert!(addr.ip().is_loopback(), "loopback only");
    let path = a[1].clone();
    let clients: usize = a[2].parse().expect("CLIENTS");
    let total: usize = a[3].parse().expect("REQUESTS");
    let max_s: f64 = a[4].parse().expect("MAX_S");
    let files: Arc<Vec<Vec<u8>>> = Arc::new(
        a[5..]
            .iter()
            .map(|f| std::fs::read(f).expect("reading a file"))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(max_s);
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (files, next, lat, errors, path) = (
                files.clone(),
                next.clone(),
                lat.clone(),
                errors.clone(),
                path.clone(),
            );
            std::thread::spawn(move || {
                let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || Instant::now() > deadline {
                        break;
                    }
                    let body = &files[i % files.len()];
                    let t = Instant::now();
                    if conn.is_none() {
                        let s = TcpStream::connect(addr).expect("connect");
                        s.set_nodelay(true).ok();
                        s.set_read_timeout(Some(Duration::from_secs(120))).ok();
                        conn = Some((s.try_clone().unwrap(), BufReader::new(s)));
                    }
                    let (w, r) = conn.as_mut().unwrap();
                    let head = format!(
                        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let ok = w.write_all(head.as_bytes()).is_ok()
                        && w.write_all(body).is_ok()
                        && read_response(r).is_some_and(|s| s == 200);
                    if ok {
                        lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let mut l = lat.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if l.is_empty() {
            f64::NAN
        } else {
            l[((l.len() - 1) as f64 * p).round() as usize]
        }
    };
    println!(
        "{{\"clients\":{clients},\"requests\":{},\"errors\":{},\"seconds\":{secs:.3},\"faces_per_s\":{:.3},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        l.len(),
        errors.load(Ordering::Relaxed),
        l.len() as f64 / secs,
        q(0.5),
        q(0.99)
    );
}

/// Reads one response (Content-Length or chunked), returns its status.
fn read_response(r: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
    let (mut len, mut chunked) = (0usize, false);
    loop {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        match k.trim().to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "transfer-encoding" => chunked = v.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).ok()?;
            let n = usize::from_str_radix(line.trim(), 16).ok()?;
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf).ok()?;
            if n == 0 {
                break;
            }
        }
    } else {
        let mut buf = vec![0u8; len];
        r.read_exact(&mut buf).ok()?;
    }
    Some(status)
}
