//! The whole control state an edge serves from (CAs, edge-defined endpoints, grants,
//! reservations), read in one transaction so that it is one consistent state of the store.

use std::collections::BTreeMap;

use sqlx::Row as _;

use crate::authorities::CaRow;
use crate::endpoints::EndpointRow;
use crate::error::StoreError;
use crate::grants::GrantRow;
use crate::reservations::ReservationRow;
use crate::store::Store;

/// Everything an edge needs to serve what operators defined; each list in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlState {
    /// Every CA.
    pub cas: Vec<CaRow>,
    /// Every edge-defined endpoint, with its CAs.
    pub endpoints: Vec<EndpointRow>,
    /// Every grant (the operator's and those joins recorded).
    pub grants: Vec<GrantRow>,
    /// Every reserved hostname.
    pub reservations: Vec<ReservationRow>,
}

impl Store {
    /// Reads the [`ControlState`] in one read transaction: an endpoint's CAs are always in it.
    pub async fn control_state(&self) -> Result<ControlState, StoreError> {
        let failed = || self.query_error("reading the control state");
        let mut transaction = self.begin_read().await.map_err(failed())?;
        let cas = all(
            &mut transaction,
            "SELECT * FROM certificate_authorities ORDER BY id",
            CaRow::from_row,
        )
        .await
        .map_err(failed())?;
        let mut ca_ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in
            sqlx::query("SELECT endpoint_id, ca_id FROM endpoint_cas ORDER BY endpoint_id, ca_id")
                .fetch_all(&mut *transaction)
                .await
                .map_err(failed())?
        {
            let endpoint: String = row.try_get("endpoint_id").map_err(failed())?;
            let ca: String = row.try_get("ca_id").map_err(failed())?;
            ca_ids.entry(endpoint).or_default().push(ca);
        }
        let endpoints = sqlx::query("SELECT * FROM endpoints ORDER BY id")
            .fetch_all(&mut *transaction)
            .await
            .map_err(failed())?
            .iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                EndpointRow::from_row(row, ca_ids.remove(&id).unwrap_or_default())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed())?;
        let grants = all(
            &mut transaction,
            "SELECT * FROM agent_grants ORDER BY id",
            GrantRow::from_row,
        )
        .await
        .map_err(failed())?;
        let reservations = all(
            &mut transaction,
            "SELECT * FROM reserved_domains ORDER BY id",
            ReservationRow::from_row,
        )
        .await
        .map_err(failed())?;
        Ok(ControlState {
            cas,
            endpoints,
            grants,
            reservations,
        })
    }
}

/// Every row `query` selects in `transaction`, each read with `from_row`.
async fn all<T>(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    query: &'static str,
    from_row: fn(&sqlx::any::AnyRow) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    sqlx::query(query)
        .fetch_all(&mut **transaction)
        .await?
        .iter()
        .map(from_row)
        .collect()
}
