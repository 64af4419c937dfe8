//! Command-line options and the kinds of chaos.

use std::fmt;
use std::time::Duration;

/// One kind of misbehaviour of the host process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SIGTSTP and SIGTTIN to the process and its group (a real stop; the
    /// harness's init continues it, as a shell would).
    Tstp,
    /// SIGCONT, SIGWINCH and handled SIGINT/SIGUSR1 to the process and to
    /// its group.
    Signals,
    /// SIGSTOP, later SIGCONT, to random members of the trees.
    Stops,
    /// `std::env::set_var`/`remove_var` in a loop.
    Env,
    /// Opening, dup'ing over and closing unrelated fds, `close_range`
    /// sweeps of the fds the driver owns, reopening files with known
    /// content.
    Fds,
    /// `fork()`: the copy sweeps its fds, spawns and drops children, exits.
    Fork,
    /// Forced pid reuse (`ns_last_pid`): decoys get recycled pids.
    PidReuse,
    /// Busy threads beside the work.
    Hogs,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::Tstp,
        Kind::Signals,
        Kind::Stops,
        Kind::Env,
        Kind::Fds,
        Kind::Fork,
        Kind::PidReuse,
        Kind::Hogs,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Tstp => "tstp",
            Kind::Signals => "signals",
            Kind::Stops => "stops",
            Kind::Env => "env",
            Kind::Fds => "fds",
            Kind::Fork => "fork",
            Kind::PidReuse => "pidreuse",
            Kind::Hogs => "hogs",
        }
    }

    fn parse(s: &str) -> Result<Kind, String> {
        Kind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown chaos kind `{s}` (kinds: {})", Kinds::all()))
    }
}

/// A set of kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds(u32);

impl Kinds {
    /// Every kind.
    pub fn all() -> Kinds {
        Kinds((1 << Kind::ALL.len()) - 1)
    }

    /// Whether `k` is in the set.
    pub fn has(self, k: Kind) -> bool {
        self.0 & (1 << k as u32) != 0
    }

    /// Parses `a,b,c`.
    pub fn parse(s: &str) -> Result<Kinds, String> {
        let mut set = 0;
        for part in s.split(',').filter(|p| !p.is_empty()) {
            set |= 1 << Kind::parse(part)? as u32;
        }
        Ok(Kinds(set))
    }

    fn without(self, other: Kinds) -> Kinds {
        Kinds(self.0 & !other.0)
    }
}

impl fmt::Display for Kinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Kind::ALL
            .into_iter()
            .filter(|k| self.has(*k))
            .map(Kind::name)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// The run's options.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long to run.
    pub duration: Duration,
    /// Seed of the first round.
    pub seed: u64,
    /// The chaos thrown.
    pub kinds: Kinds,
    /// Length of a round (work under chaos, then the checks).
    pub round: Duration,
    /// Busy threads with [`Kind::Hogs`].
    pub hogs: usize,
    /// Lateness allowed on deadlines and wait-delays.
    pub tolerance: Duration,
}

impl Config {
    /// Parses `--minutes N --seconds N --seed S --only K,.. --skip K,..
    /// --round-seconds N --hogs N --tolerance-ms N`.
    pub fn parse(args: &[String]) -> Result<Config, String> {
        let mut c = Config {
            duration: Duration::from_secs(60),
            seed: 0,
            kinds: Kinds::all(),
            round: Duration::from_secs(10),
            hogs: 2,
            tolerance: Duration::from_millis(250),
        };
        let mut seed = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
            let num =
                |v: &String| parse_u64(v).ok_or_else(|| format!("{a}: `{v}` is not a number"));
            match a.as_str() {
                "--minutes" => c.duration = Duration::from_secs(num(val()?)? * 60),
                "--seconds" => c.duration = Duration::from_secs(num(val()?)?),
                "--seed" => seed = Some(num(val()?)?),
                "--only" => c.kinds = Kinds::parse(val()?)?,
                "--skip" => c.kinds = c.kinds.without(Kinds::parse(val()?)?),
                "--round-seconds" => c.round = Duration::from_secs(num(val()?)?.max(1)),
                "--hogs" => c.hogs = num(val()?)? as usize,
                "--tolerance-ms" => c.tolerance = Duration::from_millis(num(val()?)?),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        c.seed = seed.unwrap_or_else(fresh_seed);
        Ok(c)
    }

    /// The options that reproduce this run from round `seed`.
    pub fn repro(&self, seed: u64) -> String {
        format!(
            "cargo xtask chaos --seconds {} --seed {seed:#x} --only {} --round-seconds {} --hogs {}",
            self.round.as_secs().max(1) * 3,
            self.kinds,
            self.round.as_secs(),
            self.hogs
        )
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    next_seed(t ^ u64::from(std::process::id()))
}

/// The seed of the round after one with seed `s` (splitmix64).
pub fn next_seed(s: u64) -> u64 {
    let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_print_back_as_a_reproduction() {
        let args: Vec<String> = "--seconds 30 --seed 0x2a --skip tstp,fork --hogs 1"
            .split(' ')
            .map(String::from)
            .collect();
        let c = Config::parse(&args).unwrap();
        assert_eq!(c.duration, Duration::from_secs(30));
        assert_eq!(c.seed, 42);
        assert!(!c.kinds.has(Kind::Tstp) && !c.kinds.has(Kind::Fork));
        assert!(c.kinds.has(Kind::Env));
        let again = Kinds::parse(&c.kinds.to_string()).unwrap();
        assert_eq!(again, c.kinds);
        assert!(c.repro(42).contains("--seed 0x2a --only signals,stops,env"));
        assert!(Config::parse(&["--only".into(), "frob".into()]).is_err());
        assert!(Config::parse(&["--minutes".into()]).is_err());
    }

    #[test]
    fn round_seeds_are_odd_and_differ() {
        let a = next_seed(1);
        assert_ne!(a, next_seed(a));
        assert_eq!(a & 1, 1);
    }
}
