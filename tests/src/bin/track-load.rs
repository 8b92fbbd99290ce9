//! `track-load`: the api bench's own load generator for `GET /track` over HTTP/1.1 keep-alive
//! (tests/benches/api.rs, beside oha and wrk).
//!
//! Why a third one: on this project's two-core machines the load generator shares the cores
//! with the API and Redis, and what it spends is taken from them.
//! - oha costs about 23 µs of CPU per request and paces with tokio's timers, which fire on
//!   millisecond ticks: at 23 000/s it sends 23 requests at once every millisecond.
//! - wrk costs about 10 µs and has no pacing (Debian has no wrk2).
//!
//! This one is one thread on `epoll`. It paces with a `timerfd` (nanoseconds, no timer slack),
//! waking at most every `--tick-us` (250 µs) and sending the requests that fell due since: each
//! leaves within a tick of its scheduled time, closer to independent browsers than a
//! millisecond's requests at once. A request that finds every connection busy waits for one.
//! Latency is measured from the scheduled time, so the tick and any wait count (no coordinated
//! omission). Every response is parsed
//! (status line, `Content-Length`, body): one that is not a 200, a malformed one or a socket
//! error makes the run fail with a non-zero exit.
//!
//! Each request is a participation in one of 20 experiments with a fresh random 128-bit uuid,
//! the workload of the oha and wrk rows. The result is one JSON object on stdout.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

#[derive(Debug, Parser)]
#[command(
    about = "Drive abstore-api's GET /track over keep-alive connections, closed loop or at a rate"
)]
struct Args {
    /// The API's address (host:port).
    #[arg(long, env = "TRACK_LOAD_ADDR")]
    addr: SocketAddr,
    /// Keep-alive connections.
    #[arg(long, env = "TRACK_LOAD_CONNECTIONS", default_value_t = 50)]
    connections: usize,
    /// How long requests are sent; those on the wire at the end are still awaited and counted.
    #[arg(long, env = "TRACK_LOAD_SECONDS", default_value_t = 10.0)]
    seconds: f64,
    /// Requests per second, each sent at its scheduled time (open loop). Without it, each
    /// connection sends its next request when the previous one is answered (closed loop).
    #[arg(long, env = "TRACK_LOAD_RATE")]
    rate: Option<f64>,
    /// Paced: the shortest time between two timer wake-ups, in microseconds. The requests that
    /// fell due in between leave together, late by up to this much, which their latency
    /// (measured from the scheduled time) includes. A wake-up per request would cost the
    /// generator about 20 µs of CPU each on a virtual machine, as much as oha.
    #[arg(long, env = "TRACK_LOAD_TICK_US", default_value_t = 250)]
    tick_us: u64,
}

/// How long the requests still on the wire at the end may take.
const DRAIN: Duration = Duration::from_secs(10);
const TIMER: Token = Token(usize::MAX);
const EXPERIMENTS: u64 = 20;

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
    /// The request on the wire: its start (its scheduled time when paced).
    started: Option<Instant>,
    /// What is left of the request to write (the socket buffer was full).
    output: Vec<u8>,
}

/// xorshift64*: the uuids only need to differ, not to be unpredictable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

struct Load {
    args: Args,
    host: String,
    rng: Rng,
    conns: Vec<Conn>,
    /// Connections with no request on the wire.
    idle: Vec<usize>,
    /// Scheduled requests that found no idle connection, oldest first.
    backlog: VecDeque<Instant>,
    /// Latencies in microseconds.
    latencies: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    sent: u64,
    /// Closed loop: send no more after this.
    sending_until: Instant,
    request: Vec<u8>,
    /// When the last response was read: the end of the run.
    last_answer: Instant,
}

impl Load {
    /// Writes a new request on connection `index`, started at `started`.
    fn send(&mut self, index: usize, started: Instant) -> anyhow::Result<()> {
        let (a, b, c) = (self.rng.next(), self.rng.next(), self.rng.next());
        self.request.clear();
        write!(
            self.request,
            "GET /track?experiment=flag-{}&variant={}&event=participate&uuid={a:016x}{b:016x} HTTP/1.1\r\nHost: {}\r\n\r\n",
            c % EXPERIMENTS,
            if c & (1 << 40) == 0 {
                "control"
            } else {
                "treatment"
            },
            self.host
        )?;
        let conn = &mut self.conns[index];
        conn.started = Some(started);
        let written = match conn.stream.write(&self.request) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e).with_context(|| format!("writing to {}", self.args.addr)),
        };
        conn.output.extend_from_slice(&self.request[written..]);
        self.sent += 1;
        Ok(())
    }

    /// Gives an idle connection the oldest waiting request, or (closed loop) a new one.
    fn next_for(&mut self, index: usize, now: Instant) -> anyhow::Result<()> {
        if let Some(scheduled) = self.backlog.pop_front() {
            self.send(index, scheduled)
        } else if self.args.rate.is_none() && now < self.sending_until {
            self.send(index, now)
        } else {
            self.idle.push(index);
            Ok(())
        }
    }

    /// Sends a request scheduled at `scheduled`, or queues it while every connection is busy.
    fn schedule(&mut self, scheduled: Instant) -> anyhow::Result<()> {
        match self.idle.pop() {
            Some(index) => self.send(index, scheduled),
            None => {
                self.backlog.push_back(scheduled);
                Ok(())
            }
        }
    }

    /// Reads what connection `index` has, and handles every complete response in it.
    fn readable(&mut self, index: usize) -> anyhow::Result<()> {
        let addr = self.args.addr;
        loop {
            let conn = &mut self.conns[index];
            let len = conn.input.len();
            conn.input.resize(len + 4096, 0);
            match conn.stream.read(&mut conn.input[len..]) {
                Ok(0) => bail!("{addr} closed a keep-alive connection"),
                Ok(n) => {
                    conn.input.truncate(len + n);
                    // A short read emptied the socket: no second read to hear `WouldBlock`.
                    if n < 4096 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.input.truncate(len);
                    break;
                }
                Err(e) => return Err(e).with_context(|| format!("reading from {addr}")),
            }
        }
        while let Some((status, length)) = parse_response(&self.conns[index].input)
            .with_context(|| format!("a response from {addr}"))?
        {
            let now = Instant::now();
            let conn = &mut self.conns[index];
            conn.input.drain(..length);
            let Some(started) = conn.started.take() else {
                bail!("{addr} answered a request that was not sent");
            };
            self.last_answer = now;
            let micros = now.duration_since(started).as_micros();
            self.latencies
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
            *self.statuses.entry(status).or_default() += 1;
            self.next_for(index, now)?;
        }
        Ok(())
    }

    fn writable(&mut self, index: usize) -> anyhow::Result<()> {
        let conn = &mut self.conns[index];
        while !conn.output.is_empty() {
            match conn.stream.write(&conn.output) {
                Ok(n) => {
                    conn.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).with_context(|| format!("writing to {}", self.args.addr)),
            }
        }
        Ok(())
    }

    fn answered(&self) -> u64 {
        self.latencies.len() as u64
    }
}

/// A complete response at the start of `input`: its status and length; `None` while incomplete.
fn parse_response(input: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let Some(head_end) = input.windows(4).position(|w| w == b"\r\n\r\n") else {
        if input.len() > 16 * 1024 {
            bail!("no end of headers in 16 KiB");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&input[..head_end]).context("headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked response (Transfer-Encoding {value:?}) is not supported");
        }
    }
    let length = length.context("a response without Content-Length")?;
    let total = head_end + 4 + length;
    Ok((input.len() >= total).then_some((status, total)))
}

/// A monotonic `timerfd` (the clock `Instant` reads), armed for one expiry at a time.
struct Timer(OwnedFd);

impl Timer {
    fn new() -> io::Result<Timer> {
        Ok(Timer(timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?))
    }

    /// Expires `after` from now (at least 1 ns: zero would disarm it). Re-arming resets the
    /// expiry count, so with edge-triggered polling each expiry is one event and the timer
    /// never needs to be read.
    fn arm(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(after.subsec_nanos()),
            },
        };
        timerfd_settime(&self.0, TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if !(args.seconds > 0.0 && args.seconds.is_finite()) {
        bail!("--seconds must be a positive number, not {}", args.seconds);
    }
    if let Some(rate) = args.rate
        && !(rate > 0.0 && rate.is_finite())
    {
        bail!("--rate must be a positive number of requests per second, not {rate}");
    }
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(args.connections);
    for index in 0..args.connections {
        let std_stream = std::net::TcpStream::connect(args.addr)
            .with_context(|| format!("connecting to {}", args.addr))?;
        std_stream.set_nodelay(true)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry().register(
            &mut stream,
            Token(index),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            input: Vec::with_capacity(4096),
            started: None,
            output: Vec::new(),
        });
    }
    let timer = Timer::new()?;
    poll.registry().register(
        &mut SourceFd(&timer.0.as_raw_fd()),
        TIMER,
        Interest::READABLE,
    )?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let start = Instant::now();
    let sending = Duration::from_secs_f64(args.seconds);
    let total = args.rate.map(|rate| (rate * args.seconds).round() as u64);
    let mut load = Load {
        host: args.addr.to_string(),
        rng: Rng(seed),
        idle: (0..args.connections).rev().collect(),
        backlog: VecDeque::new(),
        latencies: Vec::with_capacity(total.unwrap_or(1 << 20) as usize),
        statuses: BTreeMap::new(),
        sent: 0,
        sending_until: start + sending,
        request: Vec::with_capacity(256),
        last_answer: start,
        conns,
        args,
    };
    if load.args.rate.is_none() {
        while let Some(index) = load.idle.pop() {
            load.send(index, start)?;
        }
    }
    let mut scheduled_sent = 0u64;
    let tick = Duration::from_micros(load.args.tick_us);
    let mut timer_armed = false;
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        if let (Some(rate), Some(total)) = (load.args.rate, total) {
            let due = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
            while scheduled_sent < total && due(scheduled_sent) <= now {
                load.schedule(due(scheduled_sent))?;
                scheduled_sent += 1;
            }
            if scheduled_sent < total && !timer_armed {
                let wake = due(scheduled_sent).max(now + tick);
                timer.arm(wake - now)?;
                timer_armed = true;
            }
        }
        // Paced: done when every scheduled request is answered; closed loop: when the time is
        // up and what was on the wire is answered.
        let all_scheduled = match total {
            Some(total) => scheduled_sent >= total,
            None => now >= load.sending_until,
        };
        if all_scheduled && load.answered() == load.sent {
            break;
        }
        if now > load.sending_until + DRAIN {
            bail!(
                "{} of {} requests still unanswered by {} {} s after the end",
                load.sent - load.answered(),
                load.sent,
                load.args.addr,
                DRAIN.as_secs()
            );
        }
        // Paced, the timer wakes the loop for the next request; closed loop, a response or the
        // end of the sending time does.
        let timeout = match total {
            Some(_) if !all_scheduled => None,
            Some(_) => Some(Duration::from_millis(100)),
            None => Some(
                load.sending_until
                    .saturating_duration_since(now)
                    .clamp(Duration::from_millis(1), Duration::from_millis(100)),
            ),
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let Token(index) = event.token();
            if index == TIMER.0 {
                timer_armed = false;
                continue;
            }
            if event.is_writable() {
                load.writable(index)?;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                load.readable(index)?;
            }
        }
    }
    let elapsed = load.last_answer.duration_since(start).as_secs_f64();
    let mut sorted = std::mem::take(&mut load.latencies);
    sorted.sort_unstable();
    let answered = sorted.len() as u64;
    let statuses: BTreeMap<String, u64> = load
        .statuses
        .iter()
        .map(|(status, count)| (status.to_string(), *count))
        .collect();
    let report = serde_json::json!({
        "addr": load.args.addr.to_string(),
        "connections": load.args.connections,
        "rate": load.args.rate,
        "sent": load.sent,
        "answered": answered,
        "statuses": statuses,
        "seconds": elapsed,
        "per_second": answered as f64 / elapsed,
        "p50_us": percentile(&sorted, 50.0),
        "p90_us": percentile(&sorted, 90.0),
        "p99_us": percentile(&sorted, 99.0),
        "p999_us": percentile(&sorted, 99.9),
        "max_us": sorted.last().copied().unwrap_or(0),
    });
    println!("{report}");
    if load.statuses.keys().any(|&status| status != 200) {
        bail!("not every request was answered 200: {statuses:?}");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_response_is_complete_with_its_body() {
        let response = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nvary: origin\r\n\r\nnull";
        assert_eq!(
            parse_response(response).unwrap(),
            Some((200, response.len()))
        );
        assert_eq!(
            parse_response(&response[..response.len() - 1]).unwrap(),
            None
        );
        let two = [
            &response[..],
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n",
        ]
        .concat();
        assert_eq!(parse_response(&two).unwrap(), Some((200, response.len())));
        assert_eq!(
            parse_response(&two[response.len()..]).unwrap(),
            Some((429, two.len() - response.len()))
        );
    }

    #[test]
    fn responses_it_cannot_read_are_errors() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn percentiles_are_ranks() {
        let sorted: Vec<u32> = (1..=1000).collect();
        assert_eq!(percentile(&sorted, 50.0), 500);
        assert_eq!(percentile(&sorted, 99.0), 990);
        assert_eq!(percentile(&sorted, 100.0), 1000);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
