//! Data parallelism across processes (and machines): a small TCP process group, configured the
//! way `torchrun` configures PyTorch's (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`).
//!
//! burn 0.22's collectives connect the devices of one process only, so processes meet here:
//! rank 0 listens on `MASTER_PORT`, every other rank connects to `MASTER_ADDR:MASTER_PORT` and
//! introduces itself with its rank and a fingerprint of its configuration (a process started
//! with another recipe is refused at start, not found out by drifting weights); each rank
//! `r ≥ 2` then also connects to rank `r − 1`, forming the chain `0 → 1 → … → W−1`. Every
//! operation combines in rank order and gives everyone the same bytes, so all ranks hold
//! bit-identical results:
//!
//! - [`ProcessGroup::all_gather`]: every rank's bytes, in rank order (loss values, norms),
//!   through rank 0;
//! - [`ProcessGroup::all_reduce_sum`]: an `f32` sum, added in rank order (gradients), along the
//!   chain and back;
//! - [`ProcessGroup::broadcast`]: rank 0's bytes (the sample list of a fresh run).
//!
//! The gradient sum runs along the chain, pipelined in pieces: rank `r` adds its values to the
//! partial sum from rank `r − 1` and passes it on, and the finished sums travel back the same
//! connections. Every connection then carries the buffer once each way, whatever the number of
//! ranks (a star would move `W − 1` copies each way through rank 0), and the order of the
//! additions is still the rank order.
//!
//! Every frame carries the operation's tag, so ranks that fall out of step are detected; a
//! process that stops closes its connections, and the others fail with an error naming it
//! instead of waiting; a process that hangs is given up after the timeout.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::TrainError;

/// How long a rank waits for the others (to join, or to send their part of an operation),
/// unless `FSVFM_DIST_TIMEOUT` (seconds) says otherwise: 30 min, as PyTorch's gloo default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

const MAGIC: &[u8; 8] = b"FSVFMPG1";

/// The operation tags of the pre-training loop's exchanges (a frame with another tag than the
/// receiver expects means the ranks fell out of step).
pub mod tags {
    /// Gradients, every update.
    pub const GRADS: u8 = 10;
    /// Loss values, every micro-step.
    pub const LOSSES: u8 = 11;
    /// Gradient norms after an update (the replicas' agreement check).
    pub const NORMS: u8 = 12;
    /// The sample list and normalisation of a fresh run, from rank 0.
    pub const DATA: u8 = 13;
    /// A digest of the starting weights.
    pub const WEIGHTS: u8 = 14;
}
const TAG_HELLO: u8 = 1;
const TAG_VERDICT: u8 = 2;
const TAG_CHAIN: u8 = 3;

/// Where this process stands in a multi-process run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// This process's rank, `0..world`.
    pub rank: usize,
    /// Number of processes.
    pub world: usize,
    /// Host name or address of rank 0.
    pub master_addr: String,
    /// Port rank 0 listens on.
    pub master_port: u16,
    /// How long to wait for the other ranks.
    pub timeout: Duration,
}

impl GroupConfig {
    /// Reads the torchrun-style environment: `None` when `WORLD_SIZE` is unset or 1 (a
    /// single-process run); otherwise `RANK`, `MASTER_ADDR` and `MASTER_PORT` must be set too.
    /// `FSVFM_DIST_TIMEOUT` (seconds) overrides [`DEFAULT_TIMEOUT`].
    ///
    /// The group's port is `MASTER_PORT`, except under `torchrun`, whose agent already listens
    /// there (its own rendezvous store, announced by `TORCHELASTIC_USE_AGENT_STORE=True`): then
    /// `MASTER_PORT + 1`. `FSVFM_GROUP_PORT` overrides both.
    pub fn from_env() -> Result<Option<Self>, TrainError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`GroupConfig::from_env`] over any variable lookup.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, TrainError> {
        let parse = |name: &str| -> Result<Option<u64>, TrainError> {
            get(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        TrainError::Config(format!("{name}={v:?} is not a whole number"))
                    })
                })
                .transpose()
        };
        let world = match parse("WORLD_SIZE")? {
            None | Some(1) => return Ok(None),
            Some(0) => return Err(TrainError::Config("WORLD_SIZE=0".into())),
            Some(w) => w as usize,
        };
        let missing = |name: &str| {
            TrainError::Config(format!(
                "WORLD_SIZE={world} asks for a multi-process run, but {name} is not set \
                 (set RANK, MASTER_ADDR and MASTER_PORT as torchrun does)"
            ))
        };
        let rank = parse("RANK")?.ok_or_else(|| missing("RANK"))? as usize;
        if rank >= world {
            return Err(TrainError::Config(format!(
                "RANK={rank} is outside 0..{world} (WORLD_SIZE={world})"
            )));
        }
        let master_addr = get("MASTER_ADDR").ok_or_else(|| missing("MASTER_ADDR"))?;
        let port = parse("MASTER_PORT")?.ok_or_else(|| missing("MASTER_PORT"))?;
        let agent_store = get("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v == "True");
        let (name, port) = match parse("FSVFM_GROUP_PORT")? {
            Some(p) => ("FSVFM_GROUP_PORT", p),
            None if agent_store => ("MASTER_PORT + 1", port + 1),
            None => ("MASTER_PORT", port),
        };
        let master_port = u16::try_from(port)
            .map_err(|_| TrainError::Config(format!("{name}={port} is not a port")))?;
        let timeout = parse("FSVFM_DIST_TIMEOUT")?
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        Ok(Some(Self {
            rank,
            world,
            master_addr,
            master_port,
            timeout,
        }))
    }
}

struct Link {
    peer: String,
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Link {
    fn new(stream: TcpStream, peer: String, timeout: Duration) -> std::io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            peer,
            reader: BufReader::with_capacity(1 << 20, stream.try_clone()?),
            writer: BufWriter::with_capacity(1 << 20, stream),
        })
    }

    fn lost(&self, e: std::io::Error) -> TrainError {
        lost(&self.peer, e)
    }

    fn send(&mut self, tag: u8, bytes: &[u8]) -> Result<(), TrainError> {
        let r = (|| {
            self.writer.write_all(&head(tag, bytes.len()))?;
            self.writer.write_all(bytes)?;
            self.writer.flush()
        })();
        r.map_err(|e| self.lost(e))
    }

    /// Reads a frame's header; its payload length.
    fn expect(&mut self, tag: u8) -> Result<usize, TrainError> {
        read_head(&mut self.reader, &self.peer, tag)
    }

    fn receive(&mut self, tag: u8) -> Result<Vec<u8>, TrainError> {
        let len = self.expect(tag)?;
        let mut buf = vec![0u8; len];
        self.reader.read_exact(&mut buf).map_err(|e| self.lost(e))?;
        Ok(buf)
    }
}

/// The error for a connection to `peer` that failed with `e`.
fn lost(peer: &str, e: std::io::Error) -> TrainError {
    let what = match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            "it closed the connection".to_string()
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer within the timeout (FSVFM_DIST_TIMEOUT)".to_string()
        }
        _ => e.to_string(),
    };
    TrainError::Collective(format!(
        "lost {peer}: {what} (that process stopped or hangs: see its own output)"
    ))
}

/// A frame header: the operation tag and the payload length.
fn head(tag: u8, len: usize) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = tag;
    h[1..].copy_from_slice(&(len as u64).to_le_bytes());
    h
}

/// Reads a frame header from `peer`, which must carry `tag`; the payload length.
fn read_head(reader: &mut impl Read, peer: &str, tag: u8) -> Result<usize, TrainError> {
    let mut h = [0u8; 9];
    reader.read_exact(&mut h).map_err(|e| lost(peer, e))?;
    if h[0] != tag {
        return Err(TrainError::Collective(format!(
            "{peer} is out of step (sent operation {} while this rank runs {tag}): \
             the processes run different programs or recipes",
            h[0]
        )));
    }
    let len = u64::from_le_bytes(h[1..].try_into().unwrap_or_default());
    usize::try_from(len).map_err(|_| TrainError::Collective("frame too large".into()))
}

/// Reads the header of a frame of `n` `f32` from `peer`.
fn read_f32_head(reader: &mut impl Read, peer: &str, tag: u8, n: usize) -> Result<(), TrainError> {
    let len = read_head(reader, peer, tag)?;
    if len != 4 * n {
        return Err(TrainError::Collective(format!(
            "{peer} sent {len} bytes where {} were expected: its model differs",
            4 * n
        )));
    }
    Ok(())
}

/// Values per piece of the pipelined all-reduce (4 MiB): a rank adds its values to piece `k`
/// while piece `k + 1` is on its way in and the sums of earlier pieces are on their way back.
const PIECE: usize = 1 << 20;

// Gradients travel as their in-memory bytes (no conversion pass over 100+ M values): the wire
// format is little-endian f32, which these are only on little-endian machines.
#[cfg(not(target_endian = "little"))]
compile_error!("the process group sends f32 in memory order, which must be little-endian");

/// The connections of one process.
struct Links {
    /// Rank 0: one per other rank (index `r − 1`); the others: one, to rank 0.
    star: Vec<Link>,
    /// The chain's connection to rank `r − 1`, for ranks `r ≥ 2` (rank 1's is its star link).
    up: Option<Link>,
    /// The chain's connection to rank `r + 1`, for ranks `1 ≤ r ≤ W − 2` (rank 0's is its star
    /// link to rank 1).
    down: Option<Link>,
}

/// This process's place in the group and its connections (see the module documentation).
pub struct ProcessGroup {
    rank: usize,
    world: usize,
    links: Mutex<Links>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

/// Where two fingerprints first differ, for the error message.
fn first_difference(a: &str, b: &str) -> String {
    let (mut la, mut lb) = (a.lines(), b.lines());
    loop {
        match (la.next(), lb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (x, y) => {
                return format!(
                    "rank 0 has `{}`, it has `{}`",
                    x.unwrap_or("(nothing)"),
                    y.unwrap_or("(nothing)")
                );
            }
        }
    }
}

impl ProcessGroup {
    /// Joins the group: rank 0 waits for the `world − 1` others on `master_port`, the others
    /// connect to it (retrying until the timeout, as the processes start in any order).
    /// `fingerprint` describes what must agree across ranks (recipe, resume point, devices per
    /// process); a rank whose fingerprint differs from rank 0's is refused, and every rank gets
    /// the error.
    pub fn connect(cfg: &GroupConfig, fingerprint: &str) -> Result<Self, TrainError> {
        if cfg.world < 2 || cfg.rank >= cfg.world {
            return Err(TrainError::Config(format!(
                "rank {} in a group of {}",
                cfg.rank, cfg.world
            )));
        }
        let deadline = Instant::now() + cfg.timeout;
        let links = if cfg.rank == 0 {
            Links {
                star: Self::accept_all(cfg, fingerprint)?,
                up: None,
                down: None,
            }
        } else {
            Self::join(cfg, fingerprint, deadline)?
        };
        Ok(Self {
            rank: cfg.rank,
            world: cfg.world,
            links: Mutex::new(links),
        })
    }

    fn accept_all(cfg: &GroupConfig, fingerprint: &str) -> Result<Vec<Link>, TrainError> {
        let listener = TcpListener::bind(("0.0.0.0", cfg.master_port)).map_err(|e| {
            TrainError::Collective(format!(
                "rank 0 cannot listen on port {}: {e} (another run may hold it: choose another MASTER_PORT)",
                cfg.master_port
            ))
        })?;
        let deadline = Instant::now() + cfg.timeout;
        // Per rank 1..: its link, fingerprint, and where it listens for its chain successor.
        let mut slots: Vec<Option<(Link, String, String)>> = (1..cfg.world).map(|_| None).collect();
        while slots.iter().any(Option::is_none) {
            let Some((stream, addr)) = accept_until(&listener, deadline)
                .map_err(|e| TrainError::Collective(format!("accept: {e}")))?
            else {
                let missing: Vec<String> = slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.is_none())
                    .map(|(i, _)| (i + 1).to_string())
                    .collect();
                return Err(TrainError::Collective(format!(
                    "rank(s) {} did not join within {} s (are they started, with MASTER_ADDR \
                     pointing at this machine and MASTER_PORT={}?)",
                    missing.join(", "),
                    cfg.timeout.as_secs(),
                    cfg.master_port
                )));
            };
            let io = |e: std::io::Error| TrainError::Collective(format!("{addr}: {e}"));
            let mut link =
                Link::new(stream, format!("the process at {addr}"), cfg.timeout).map_err(io)?;
            let hello = link.receive(TAG_HELLO)?;
            let (rank, world, port, their) = parse_hello(&hello).ok_or_else(|| {
                TrainError::Collective(format!("{addr} is not an fsvfm process of this version"))
            })?;
            let refuse = |link: &mut Link, why: String| {
                let _ = link.send(TAG_VERDICT, &[b"\x01", why.as_bytes()].concat());
                Err(TrainError::Collective(why))
            };
            if world != cfg.world {
                return refuse(
                    &mut link,
                    format!(
                        "rank {rank} has WORLD_SIZE={world}, rank 0 has {}",
                        cfg.world
                    ),
                );
            }
            if rank == 0 || rank >= cfg.world || slots[rank - 1].is_some() {
                return refuse(
                    &mut link,
                    format!("two processes claim RANK={rank} (or it is outside 1..{world})"),
                );
            }
            link.peer = format!("rank {rank} ({addr})");
            // Reachable at the address rank 0 sees it from.
            let listens = std::net::SocketAddr::new(addr.ip(), port).to_string();
            slots[rank - 1] = Some((link, their, listens));
        }
        // One verdict for all: every rank learns why the run does not start.
        let refused = slots.iter().enumerate().find_map(|(i, s)| {
            let (_, their, _) = s.as_ref()?;
            (their != fingerprint).then(|| {
                format!(
                    "rank {} was started with another configuration than rank 0: {}",
                    i + 1,
                    first_difference(fingerprint, their)
                )
            })
        });
        // Accepted: 0, then where every rank listens (line r − 1 for rank r); refused: 1, why.
        let verdict = match &refused {
            Some(why) => [b"\x01", why.as_bytes()].concat(),
            None => {
                let table: Vec<&str> = slots.iter().flatten().map(|(_, _, a)| a.as_str()).collect();
                [b"\x00", table.join("\n").as_bytes()].concat()
            }
        };
        let mut links = Vec::with_capacity(cfg.world - 1);
        for (mut link, _, _) in slots.into_iter().flatten() {
            link.send(TAG_VERDICT, &verdict)?;
            links.push(link);
        }
        match refused {
            Some(why) => Err(TrainError::Collective(why)),
            None => Ok(links),
        }
    }

    /// A rank `r ≥ 1` joins: listens for its chain successor (if it has one), introduces itself
    /// to rank 0, then connects to its chain predecessor (rank 0's link, for rank 1) and accepts
    /// its successor.
    fn join(cfg: &GroupConfig, fingerprint: &str, deadline: Instant) -> Result<Links, TrainError> {
        let r = cfg.rank;
        let has_next = r + 1 < cfg.world;
        let listener = if has_next {
            let l = TcpListener::bind(("0.0.0.0", 0)).map_err(|e| {
                TrainError::Collective(format!("rank {r} cannot listen for rank {}: {e}", r + 1))
            })?;
            Some(l)
        } else {
            None
        };
        let port = match &listener {
            Some(l) => l
                .local_addr()
                .map_err(|e| TrainError::Collective(e.to_string()))?
                .port(),
            None => 0,
        };
        let target = format!("{}:{}", cfg.master_addr, cfg.master_port);
        let stream = connect_until(&target, deadline).map_err(|e| {
            TrainError::Collective(format!(
                "rank {r} could not reach rank 0 at {target} within {} s: {e}",
                cfg.timeout.as_secs()
            ))
        })?;
        let mut link = Link::new(stream, format!("rank 0 ({target})"), cfg.timeout)
            .map_err(|e| TrainError::Collective(format!("{target}: {e}")))?;
        let mut hello = MAGIC.to_vec();
        hello.extend((r as u64).to_le_bytes());
        hello.extend((cfg.world as u64).to_le_bytes());
        hello.extend(u64::from(port).to_le_bytes());
        hello.extend(fingerprint.as_bytes());
        link.send(TAG_HELLO, &hello)?;
        let verdict = link.receive(TAG_VERDICT)?;
        let text = String::from_utf8_lossy(verdict.get(1..).unwrap_or_default()).into_owned();
        if verdict.first() != Some(&0) {
            return Err(TrainError::Collective(text));
        }
        let table: Vec<&str> = text.lines().collect();
        let up = if r >= 2 {
            let addr = table.get(r - 2).copied().unwrap_or_default();
            let stream = connect_until(addr, deadline).map_err(|e| {
                TrainError::Collective(format!(
                    "rank {r} could not reach rank {} at {addr}: {e}",
                    r - 1
                ))
            })?;
            let mut up = Link::new(stream, format!("rank {} ({addr})", r - 1), cfg.timeout)
                .map_err(|e| TrainError::Collective(format!("{addr}: {e}")))?;
            up.send(TAG_CHAIN, &(r as u64).to_le_bytes())?;
            Some(up)
        } else {
            None
        };
        let down = match listener {
            Some(l) => {
                let (stream, addr) = accept_until(&l, deadline)
                    .map_err(|e| TrainError::Collective(format!("accept: {e}")))?
                    .ok_or_else(|| {
                        TrainError::Collective(format!(
                            "rank {} did not connect to rank {r} within {} s",
                            r + 1,
                            cfg.timeout.as_secs()
                        ))
                    })?;
                let mut down = Link::new(stream, format!("rank {} ({addr})", r + 1), cfg.timeout)
                    .map_err(|e| TrainError::Collective(format!("{addr}: {e}")))?;
                let who = down.receive(TAG_CHAIN)?;
                if who[..] != ((r + 1) as u64).to_le_bytes()[..] {
                    return Err(TrainError::Collective(format!(
                        "the process at {addr} is not rank {}",
                        r + 1
                    )));
                }
                Some(down)
            }
            None => None,
        };
        Ok(Links {
            star: vec![link],
            up,
            down,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of processes.
    pub fn world(&self) -> usize {
        self.world
    }

    fn links(&self) -> Result<std::sync::MutexGuard<'_, Links>, TrainError> {
        self.links
            .lock()
            .map_err(|_| TrainError::Collective("a thread using the group panicked".into()))
    }

    /// Every rank's `bytes`, in rank order (the same on every rank).
    pub fn all_gather(&self, tag: u8, bytes: &[u8]) -> Result<Vec<Vec<u8>>, TrainError> {
        let links = &mut self.links()?.star;
        if self.rank == 0 {
            let mut parts = vec![bytes.to_vec()];
            for link in links.iter_mut() {
                parts.push(link.receive(tag)?);
            }
            let mut framed = Vec::new();
            for p in &parts {
                framed.extend((p.len() as u64).to_le_bytes());
                framed.extend(p);
            }
            for link in links.iter_mut() {
                link.send(tag, &framed)?;
            }
            Ok(parts)
        } else {
            let link = &mut links[0];
            link.send(tag, bytes)?;
            let framed = link.receive(tag)?;
            let mut parts = Vec::with_capacity(self.world);
            let mut rest = &framed[..];
            while rest.len() >= 8 {
                let n = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default()) as usize;
                let p = rest
                    .get(8..8 + n)
                    .ok_or_else(|| TrainError::Collective("a truncated gather".into()))?;
                parts.push(p.to_vec());
                rest = &rest[8 + n..];
            }
            if parts.len() != self.world {
                return Err(TrainError::Collective(format!(
                    "a gather of {} parts in a group of {}",
                    parts.len(),
                    self.world
                )));
            }
            Ok(parts)
        }
    }

    /// Replaces `data` with its sum over the ranks, added in rank order
    /// (`((x₀ + x₁) + x₂) + …`), so the result is the same bits on every rank.
    ///
    /// Along the chain, pipelined in pieces of `PIECE` values: rank `r` receives piece `k` of
    /// the partial sum `x₀ + … + x_{r−1}` from rank `r − 1`, adds its own, and sends it on to
    /// `r + 1` (the last rank then holds the sum); a second thread meanwhile receives the
    /// finished sums coming back from `r + 1` and passes them to `r − 1`. The values travel as
    /// they lie in memory, without a conversion pass.
    pub fn all_reduce_sum(&self, tag: u8, data: &mut [f32]) -> Result<(), TrainError> {
        let mut guard = self.links()?;
        let Links { star, up, down } = &mut *guard;
        let (prev, next) = match self.rank {
            0 => (None, star.first_mut()),
            1 => (star.first_mut(), down.as_mut()),
            _ => (up.as_mut(), down.as_mut()),
        };
        let n = data.len();
        let (mut prev_reader, prev_writer) = match prev.map(split_link) {
            Some((r, w, p, _)) => (Some((r, p.clone())), Some((w, p))),
            None => (None, None),
        };
        let (next_reader, next_writer, next_stream) = match next.map(split_link) {
            Some((r, w, p, s)) => (Some((r, p.clone())), Some((w, p)), s),
            None => (None, None, None),
        };
        // Forward, the partial sums go to the next rank; the last rank, which has none, sends
        // the finished sums back to the previous one itself. Otherwise the sums go back through
        // the thread that reads them from the next rank.
        let has_next = next_reader.is_some();
        let (mut back_writer, mut out_writer) = if has_next {
            (prev_writer, next_writer)
        } else {
            (None, prev_writer)
        };
        std::thread::scope(|scope| {
            let (to_back, pieces) = std::sync::mpsc::channel::<&mut [f32]>();
            let back = next_reader.map(|(reader, peer)| {
                scope.spawn(move || -> Result<(), TrainError> {
                    read_f32_head(reader, &peer, tag, n)?;
                    if let Some((w, p)) = &mut back_writer {
                        w.write_all(&head(tag, 4 * n)).map_err(|e| lost(p, e))?;
                    }
                    for piece in pieces {
                        reader
                            .read_exact(bytemuck::cast_slice_mut(piece))
                            .map_err(|e| lost(&peer, e))?;
                        if let Some((w, p)) = &mut back_writer {
                            w.write_all(bytemuck::cast_slice(piece))
                                .and_then(|()| w.flush())
                                .map_err(|e| lost(p, e))?;
                        }
                    }
                    Ok(())
                })
            });
            let forward = (move || -> Result<(), TrainError> {
                // Taken by value: the pieces handed to the back thread borrow `data` for the
                // whole scope, not for one call of this closure.
                let (data, to_back) = (data, to_back);
                if let Some((r, p)) = &mut prev_reader {
                    read_f32_head(*r, p, tag, n)?;
                }
                if let Some((w, p)) = &mut out_writer {
                    w.write_all(&head(tag, 4 * n)).map_err(|e| lost(p, e))?;
                }
                let mut part = vec![0f32; PIECE.min(n)];
                for piece in data.chunks_mut(PIECE) {
                    if let Some((r, p)) = &mut prev_reader {
                        let part = &mut part[..piece.len()];
                        r.read_exact(bytemuck::cast_slice_mut(part))
                            .map_err(|e| lost(p, e))?;
                        // (x₀ + … + x_{r−1}) + x_r: rank order (IEEE addition commutes, so
                        // which operand is written first does not change a bit).
                        for (a, b) in piece.iter_mut().zip(part.iter()) {
                            *a += *b;
                        }
                    }
                    if let Some((w, p)) = &mut out_writer {
                        w.write_all(bytemuck::cast_slice(piece))
                            .and_then(|()| w.flush())
                            .map_err(|e| lost(p, e))?;
                    }
                    if has_next && to_back.send(piece).is_err() {
                        break; // the back thread failed; its error is reported below
                    }
                }
                Ok(())
            })();
            if forward.is_err() {
                // Unblock the back thread, which may wait for sums that will not come.
                if let Some(s) = &next_stream {
                    let _ = s.shutdown(std::net::Shutdown::Both);
                }
            }
            let back = back.map_or(Ok(()), |h| {
                h.join().unwrap_or_else(|_| {
                    Err(TrainError::Collective(
                        "the thread passing sums back panicked".into(),
                    ))
                })
            });
            forward.and(back)
        })
    }

    /// Rank 0's `bytes` on every rank (the others' argument is ignored).
    pub fn broadcast(&self, tag: u8, bytes: &[u8]) -> Result<Vec<u8>, TrainError> {
        let links = &mut self.links()?.star;
        if self.rank == 0 {
            for link in links.iter_mut() {
                link.send(tag, bytes)?;
            }
            Ok(bytes.to_vec())
        } else {
            links[0].receive(tag)
        }
    }
}

/// A link's reader, writer, peer name and a handle to shut its socket down.
fn split_link(
    l: &mut Link,
) -> (
    &mut BufReader<TcpStream>,
    &mut BufWriter<TcpStream>,
    String,
    Option<TcpStream>,
) {
    let stream = l.writer.get_ref().try_clone().ok();
    (&mut l.reader, &mut l.writer, l.peer.clone(), stream)
}

/// Rank, world size, listening port and fingerprint of a hello frame.
fn parse_hello(b: &[u8]) -> Option<(usize, usize, u16, String)> {
    if b.len() < 32 || &b[..8] != MAGIC {
        return None;
    }
    let word = |i: usize| b.get(i..i + 8)?.try_into().ok().map(u64::from_le_bytes);
    let (rank, world) = (word(8)? as usize, word(16)? as usize);
    let port = u16::try_from(word(24)?).ok()?;
    Some((
        rank,
        world,
        port,
        String::from_utf8_lossy(&b[32..]).into_owned(),
    ))
}

/// The next connection on `listener`, or `None` once `deadline` passed.
fn accept_until(
    listener: &TcpListener,
    deadline: Instant,
) -> std::io::Result<Option<(TcpStream, std::net::SocketAddr)>> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, addr)) => {
                stream.set_nonblocking(false)?;
                return Ok(Some((stream, addr)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A connection to `target` (`host:port`), retried until `deadline` (the other process may not
/// listen yet).
fn connect_until(target: &str, deadline: Instant) -> std::io::Result<TcpStream> {
    loop {
        let attempt = target
            .to_socket_addrs()
            .and_then(|mut a| {
                a.next()
                    .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address"))
            })
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)));
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn config(rank: usize, world: usize, port: u16) -> GroupConfig {
        GroupConfig {
            rank,
            world,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            timeout: Duration::from_secs(20),
        }
    }

    /// Runs `f` on `world` ranks (threads here; processes in use) that join one group.
    fn on_ranks<T: Send + 'static>(
        world: usize,
        prints: impl Fn(usize) -> String,
        f: impl Fn(ProcessGroup) -> T + Send + Sync + Clone + 'static,
    ) -> Vec<Result<T, TrainError>> {
        let port = free_port();
        let handles: Vec<_> = (0..world)
            .map(|r| {
                let (f, print) = (f.clone(), prints(r));
                std::thread::spawn(move || {
                    ProcessGroup::connect(&config(r, world, port), &print).map(&f)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn three_ranks_gather_reduce_and_broadcast_alike() {
        let out = on_ranks(
            3,
            |_| "recipe a".into(),
            |g| {
                let r = g.rank();
                let gathered = g.all_gather(7, &vec![r as u8; r + 1]).unwrap();
                // Values whose f32 sum depends on the order: 1e8 + 1 − 1e8 is 0 or 1.
                let mut x = vec![[1e8f32, 1.0, -1e8][r], r as f32 * 0.1];
                g.all_reduce_sum(8, &mut x).unwrap();
                let b = g
                    .broadcast(9, if r == 0 { b"from zero" } else { b"ignored" })
                    .unwrap();
                (gathered, x, b)
            },
        );
        let want_sum = [(1e8f32 + 1.0) + -1e8, (0.0f32 + 0.1) + 0.2];
        for o in out {
            let (gathered, x, b) = o.unwrap();
            assert_eq!(gathered, vec![vec![0u8], vec![1, 1], vec![2, 2, 2]]);
            assert_eq!(
                x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want_sum.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "rank order, the same bits everywhere"
            );
            assert_eq!(b, b"from zero");
        }
    }

    #[test]
    fn a_reduce_of_many_pieces_is_summed_in_rank_order() {
        // Two and a half pieces, so the pipelined path and a short last piece both run.
        let n = 2 * PIECE + PIECE / 2;
        // Four ranks: rank 2 has chain links of its own both ways.
        let value =
            |r: usize, i: usize| ((i * 7 + r * 13) % 1000) as f32 * [1e-3, 1e4, -1e4, 3e-2][r];
        let out = on_ranks(
            4,
            |_| String::new(),
            move |g| {
                let mut x: Vec<f32> = (0..n).map(|i| value(g.rank(), i)).collect();
                g.all_reduce_sum(5, &mut x).unwrap();
                x
            },
        );
        let want: Vec<u32> = (0..n)
            .map(|i| (((value(0, i) + value(1, i)) + value(2, i)) + value(3, i)).to_bits())
            .collect();
        for o in out {
            let got: Vec<u32> = o.unwrap().iter().map(|v| v.to_bits()).collect();
            assert!(got == want, "rank-order sums, bit for bit");
        }
    }

    #[test]
    fn a_rank_with_another_configuration_is_refused_with_the_difference() {
        let out = on_ranks(
            2,
            |r| format!("model vit_small\nbatch_size = {}\n", 8 + r),
            |_| (),
        );
        for o in out {
            let e = o.unwrap_err().to_string();
            assert!(
                e.contains("batch_size = 8") && e.contains("batch_size = 9"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_with_its_name() {
        let out = on_ranks(
            2,
            |_| String::new(),
            |g| {
                if g.rank() == 1 {
                    drop(g); // the process stops
                    return Ok(Vec::new());
                }
                g.all_gather(3, b"x")
            },
        );
        let e = out[0].as_ref().unwrap().as_ref().unwrap_err().to_string();
        assert!(e.contains("lost rank 1") && e.contains("closed"), "{e}");
        // Operations out of step are named as such.
        let out = on_ranks(
            2,
            |_| String::new(),
            |g| g.all_gather(3 + g.rank() as u8, b"x"),
        );
        let e = out[0].as_ref().unwrap().as_ref().unwrap_err().to_string();
        assert!(e.contains("out of step"), "{e}");
    }

    #[test]
    fn a_missing_rank_times_out_with_a_clear_error() {
        let mut cfg = config(0, 3, free_port());
        cfg.timeout = Duration::from_millis(300);
        let e = ProcessGroup::connect(&cfg, "").unwrap_err().to_string();
        assert!(e.contains("rank(s) 1, 2 did not join"), "{e}");
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_environment_is_read_like_torchrun_sets_it() {
        assert_eq!(GroupConfig::from_lookup(lookup(&[])).unwrap(), None);
        assert_eq!(
            GroupConfig::from_lookup(lookup(&[("WORLD_SIZE", "1")])).unwrap(),
            None
        );
        let cfg = GroupConfig::from_lookup(lookup(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "2"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("FSVFM_DIST_TIMEOUT", "60"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            cfg,
            GroupConfig {
                rank: 2,
                world: 4,
                master_addr: "node0".into(),
                master_port: 29500,
                timeout: Duration::from_secs(60),
            }
        );
        // Under torchrun, the port after its agent's; FSVFM_GROUP_PORT wins.
        let torchrun = [
            ("WORLD_SIZE", "2"),
            ("RANK", "1"),
            ("MASTER_ADDR", "localhost"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ];
        let port = |pairs: &[(&str, &str)]| {
            GroupConfig::from_lookup(lookup(pairs))
                .unwrap()
                .unwrap()
                .master_port
        };
        assert_eq!(port(&torchrun), 29501);
        assert_eq!(
            port(&[&torchrun[..], &[("FSVFM_GROUP_PORT", "4000")]].concat()),
            4000
        );
        let full = |rank: &'static str, port: &'static str| {
            [
                ("WORLD_SIZE", "2"),
                ("RANK", rank),
                ("MASTER_ADDR", "a"),
                ("MASTER_PORT", port),
            ]
        };
        for (bad, says) in [
            (&[("WORLD_SIZE", "2")][..], "RANK is not set"),
            (&full("2", "1")[..], "outside 0..2"),
            (&full("1", "70000")[..], "not a port"),
            (&[("WORLD_SIZE", "two")][..], "not a whole number"),
        ] {
            let e = GroupConfig::from_lookup(lookup(bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
    }
}
