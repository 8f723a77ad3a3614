//! [`KillSwitch`]: the market's block and unblock commands (DESIGN §6.8), persisted in the
//! central DB before they are acknowledged, ordered by their per-tenant `sequence`, and
//! enforced on every request — also while the market is unreachable, and after a restart.

use std::{collections::HashMap, sync::Arc};

use mt_paas_protocol::{AckStatus, Block, BlockCommand, UnblockCommand};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use time::OffsetDateTime;

use crate::core::{
    central::{CentralDb, on_pool},
    models::TenantId,
};

/// A tenant's kill-switch state: the newest command's sequence, and its block if any.
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchState {
    /// The newest command's sequence.
    pub sequence: u64,
    /// The newest command.
    pub command_id: String,
    /// The block, when the newest command blocks.
    pub block: Option<Block>,
}

/// What a block means for a request at a given moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// No block.
    Open,
    /// A block lies ahead (`block_at` in the future) or its grace runs: the request passes,
    /// with a notice.
    Notice {
        /// The market's message.
        message: String,
        /// When requests will be refused.
        blocked_from: OffsetDateTime,
    },
    /// Blocked: refused with the market's message.
    Blocked {
        /// The market's message, as given.
        message: String,
    },
}

/// What `block` means at `now`.
pub(crate) fn access(block: Option<&Block>, now: OffsetDateTime) -> Access {
    let Some(block) = block else {
        return Access::Open;
    };
    let refuses_from = block.refuses_from();
    if now >= refuses_from {
        Access::Blocked {
            message: block.message.clone(),
        }
    } else {
        Access::Notice {
            message: block.message.clone(),
            blocked_from: refuses_from,
        }
    }
}

/// The kill switch of one service.
#[derive(Clone)]
pub struct KillSwitch {
    inner: Arc<Inner>,
}

struct Inner {
    db: CentralDb,
    /// Read on every request: a plain lock, never held across an await.
    states: RwLock<HashMap<TenantId, SwitchState>>,
}

impl Inner {
    // Every mutation is one map operation, so a poisoned map is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<TenantId, SwitchState>> {
        self.states.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<TenantId, SwitchState>> {
        self.states.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for KillSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KillSwitch").finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    tenant_id: String,
    sequence: i64,
    command_id: String,
    block: Option<String>,
}

impl KillSwitch {
    /// The kill switch stored in `db`, loaded into memory.
    pub async fn load(db: CentralDb) -> Result<Self, sqlx::Error> {
        let this = Self {
            inner: Arc::new(Inner {
                db,
                states: RwLock::new(HashMap::new()),
            }),
        };
        this.reload().await?;
        Ok(this)
    }

    /// Reads every tenant's state from the central DB again (another replica changed it).
    pub async fn reload(&self) -> Result<(), sqlx::Error> {
        let rows: Vec<Row> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as("SELECT tenant_id, sequence, command_id, block FROM kill_switch").fetch_all(pool).await?
        });
        let mut states = HashMap::with_capacity(rows.len());
        for row in rows {
            let Ok(id) = TenantId::parse(&row.tenant_id) else {
                continue;
            };
            let block = row.block.and_then(|b| serde_json::from_str(&b).ok());
            states.insert(
                id,
                SwitchState {
                    sequence: u64::try_from(row.sequence).unwrap_or_default(),
                    command_id: row.command_id,
                    block,
                },
            );
        }
        *self.inner.write() = states;
        Ok(())
    }

    /// Reads one tenant's state from the central DB again (another replica changed it).
    pub async fn reload_tenant(&self, id: &TenantId) -> Result<(), sqlx::Error> {
        let row: Option<Row> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as("SELECT tenant_id, sequence, command_id, block FROM kill_switch WHERE tenant_id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        let mut states = self.inner.write();
        match row {
            Some(row) => {
                states.insert(
                    id.clone(),
                    SwitchState {
                        sequence: u64::try_from(row.sequence).unwrap_or_default(),
                        command_id: row.command_id,
                        block: row.block.and_then(|b| serde_json::from_str(&b).ok()),
                    },
                );
            }
            None => {
                states.remove(id);
            }
        }
        Ok(())
    }

    /// A tenant's state.
    pub async fn state(&self, id: &TenantId) -> Option<SwitchState> {
        self.current(id)
    }

    /// [`state`](Self::state), for a caller that cannot wait (it never does).
    pub(crate) fn current(&self, id: &TenantId) -> Option<SwitchState> {
        self.inner.read().get(id).cloned()
    }

    /// Applies a block command; an older sequence than the stored one is superseded, the
    /// same command again is applied (idempotent).
    pub async fn block(
        &self,
        id: &TenantId,
        command: &BlockCommand,
    ) -> Result<AckStatus, sqlx::Error> {
        let block = Block {
            reason: command.reason.clone(),
            message: command.message.clone(),
            block_at: command.block_at,
            grace_period_hours: command.grace_period_hours,
            command_id: command.command_id.clone(),
            sequence: command.sequence,
        };
        self.apply(id, command.sequence, &command.command_id, Some(block))
            .await
    }

    /// Applies an unblock command.
    pub async fn unblock(
        &self,
        id: &TenantId,
        command: &UnblockCommand,
    ) -> Result<AckStatus, sqlx::Error> {
        self.apply(id, command.sequence, &command.command_id, None)
            .await
    }

    async fn apply(
        &self,
        id: &TenantId,
        sequence: u64,
        command_id: &str,
        block: Option<Block>,
    ) -> Result<AckStatus, sqlx::Error> {
        let seq = i64::try_from(sequence).unwrap_or(i64::MAX);
        let body = block
            .as_ref()
            .map(|b| serde_json::to_string(b).unwrap_or_default());
        // Persist first (the write wins only with a newer sequence), then answer.
        let written = on_pool!(&self.inner.db, pool => {
            sqlx::query(
                "INSERT INTO kill_switch (tenant_id, sequence, command_id, block, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id) DO UPDATE SET sequence = $2, command_id = $3, block = $4, updated_at = $5 \
                 WHERE kill_switch.sequence < $2",
            )
            .bind(id.as_str())
            .bind(seq)
            .bind(command_id)
            .bind(&body)
            .bind(OffsetDateTime::now_utc())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if written > 0 {
            self.inner.db.notify("kill_switch", id.as_str()).await;
            self.inner.write().insert(
                id.clone(),
                SwitchState {
                    sequence,
                    command_id: command_id.to_owned(),
                    block,
                },
            );
            return Ok(AckStatus::Applied);
        }
        let stored: Option<(i64, String)> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as("SELECT sequence, command_id FROM kill_switch WHERE tenant_id = $1")
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(match stored {
            Some((s, c)) if s == seq && c == command_id => AckStatus::Applied,
            _ => AckStatus::Superseded,
        })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn block(at: OffsetDateTime, grace: u64) -> Block {
        Block {
            reason: "subscription_expired".into(),
            message: "구독이 만료되었습니다. 갱신해주세요.".into(),
            block_at: at,
            grace_period_hours: grace,
            command_id: "c".into(),
            sequence: 1,
        }
    }

    #[test]
    fn access_over_time() {
        let at = datetime!(2026-01-03 12:00 UTC);
        assert_eq!(access(None, at), Access::Open);
        let now_block = block(at, 0);
        assert!(matches!(
            access(Some(&now_block), at),
            Access::Blocked { .. }
        ));
        assert!(matches!(
            access(Some(&now_block), at - time::Duration::seconds(1)),
            Access::Notice { .. }
        ));
        let graced = block(at, 24);
        assert!(matches!(
            access(Some(&graced), at + time::Duration::hours(23)),
            Access::Notice { .. }
        ));
        assert!(
            matches!(access(Some(&graced), at + time::Duration::hours(24)), Access::Blocked { ref message } if message == "구독이 만료되었습니다. 갱신해주세요.")
        );
    }
}
