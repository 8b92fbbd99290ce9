//! Sticky assignment: the first variation a user gets for a flag is stored (`SET as:… NX GET EX`)
//! and returned on later calls, even after the flag's weights change.
//!
//! The computed choice is deterministic ([`crate::assignment::assign`]), so a retried `SET NX`
//! writes the same value: the call is idempotent and safe to resend through failover.

use std::time::Duration;

use crate::assignment::{WeightedVariation, assign};
use crate::connection::{Connection, Retry};
use crate::error::{Error, Result};
use crate::keys::{Env, Key};

/// Default lifetime of a sticky assignment.
pub const DEFAULT_STICKY_TTL: Duration = Duration::from_secs(90 * 86_400);

/// Whether the returned variation was just chosen or had been stored before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyAssignment {
    pub variation: String,
    /// `true` when the variation came from an earlier assignment.
    pub existing: bool,
}

/// Assigns users to variations and remembers the assignment in Redis.
#[derive(Debug, Clone)]
pub struct StickyAssigner {
    conn: Connection,
    env: Option<Env>,
    ttl: Duration,
}

impl StickyAssigner {
    pub fn new(conn: Connection, env: Option<Env>, ttl: Duration) -> Result<Self> {
        if ttl.as_secs() == 0 {
            return Err(Error::InvalidArgument {
                field: "ttl",
                reason: "sticky assignments need a lifetime of at least one second".into(),
            });
        }
        Ok(Self { conn, env, ttl })
    }

    /// The user's variation of `flag`: the stored one if it is still offered (weight > 0),
    /// else the deterministic choice, which is then stored.
    pub async fn assign(
        &self,
        flag: &str,
        user: &str,
        variations: &[WeightedVariation],
    ) -> Result<StickyAssignment> {
        let chosen = assign(flag, user, variations)?.id.clone();
        let key = Key::assignment(self.env.as_ref(), flag, user)?.to_string();
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(&chosen)
            .arg("NX")
            .arg("GET")
            .arg("EX")
            .arg(self.ttl.as_secs());
        let (previous,): (Option<String>,) = self
            .conn
            .exec(&pipe, Retry::Idempotent, "sticky assignment")
            .await?;
        match previous {
            None => Ok(StickyAssignment {
                variation: chosen,
                existing: false,
            }),
            Some(stored) if variations.iter().any(|v| v.id == stored && v.weight > 0) => {
                Ok(StickyAssignment {
                    variation: stored,
                    existing: true,
                })
            }
            Some(_withdrawn) => {
                // The stored variation is no longer offered: move the user to today's choice.
                let mut pipe = redis::pipe();
                pipe.cmd("SET")
                    .arg(&key)
                    .arg(&chosen)
                    .arg("EX")
                    .arg(self.ttl.as_secs());
                let _: (redis::Value,) = self
                    .conn
                    .exec(&pipe, Retry::Idempotent, "sticky reassignment")
                    .await?;
                Ok(StickyAssignment {
                    variation: chosen,
                    existing: false,
                })
            }
        }
    }
}
