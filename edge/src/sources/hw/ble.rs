//! BLE passive scanning through BlueZ (btleplug): RSSI, tx power, iBeacon and Eddystone
//! ids. Devices not on the allow-list are reported only as salted hashes.

use super::parse;
use crate::config::BleSourceConfig;
use crate::obs::Observation;
use crate::sources::{OpenEnv, SensorSource, SourceCtx};
use async_trait::async_trait;
use btleplug::api::{Central, CentralEvent, Manager as _, Peripheral as _, ScanFilter};
use btleplug::platform::{Adapter, Manager};
use futures::StreamExt;
use roomsense_common::{DeviceId, SightingKind};
use std::collections::BTreeMap;

pub struct BleSource {
    adapter: Adapter,
    cfg: BleSourceConfig,
    salt: String,
}

const EDDYSTONE: uuid::Uuid = uuid::Uuid::from_u128(0x0000feaa_0000_1000_8000_00805f9b34fb);

/// Names of the BLE adapters (empty without BlueZ).
pub async fn adapters() -> anyhow::Result<Vec<String>> {
    let m = Manager::new().await.map_err(|e| {
        anyhow::anyhow!("ble: cannot reach BlueZ over D-Bus ({e}); is bluetoothd running?")
    })?;
    let mut names = Vec::new();
    for a in m
        .adapters()
        .await
        .map_err(|e| anyhow::anyhow!("ble: listing adapters: {e}"))?
    {
        names.push(a.adapter_info().await.unwrap_or_else(|_| "unknown".into()));
    }
    Ok(names)
}

impl BleSource {
    pub async fn open(c: &BleSourceConfig, env: &OpenEnv) -> anyhow::Result<Self> {
        let m = Manager::new().await.map_err(|e| {
            anyhow::anyhow!("ble source: cannot reach BlueZ over D-Bus ({e}); install and start bluez (bluetoothd), or use the `sim` source")
        })?;
        let list = m
            .adapters()
            .await
            .map_err(|e| anyhow::anyhow!("ble source: listing adapters through BlueZ: {e}"))?;
        let mut chosen = None;
        for a in list {
            let info = a.adapter_info().await.unwrap_or_default();
            if c.adapter
                .as_ref()
                .is_none_or(|want| info.contains(want.as_str()))
            {
                chosen = Some(a);
                break;
            }
        }
        let adapter = chosen.ok_or_else(|| {
            anyhow::anyhow!(
                "ble source: no Bluetooth adapter{} found",
                c.adapter
                    .as_ref()
                    .map(|a| format!(" named {a:?}"))
                    .unwrap_or_default()
            )
        })?;
        Ok(Self {
            adapter,
            cfg: c.clone(),
            salt: env.salt.clone(),
        })
    }
}

/// The reported id and kind of an advertiser, or `None` if it is filtered out.
pub fn identify(
    cfg: &BleSourceConfig,
    salt: &str,
    address: &str,
    manufacturer: &std::collections::HashMap<u16, Vec<u8>>,
    service: &std::collections::HashMap<uuid::Uuid, Vec<u8>>,
) -> Option<(String, SightingKind, Option<i8>)> {
    let beacon = manufacturer
        .get(&parse::APPLE)
        .and_then(|d| parse::ibeacon(d))
        .map(|(id, tx)| (id, SightingKind::Ibeacon, tx))
        .or_else(|| {
            service
                .get(&EDDYSTONE)
                .and_then(|d| parse::eddystone_uid(d))
                .map(|(id, tx)| (id, SightingKind::Eddystone, tx.saturating_sub(41)))
        });
    let addr = address.to_ascii_uppercase();
    let keys: Vec<&str> = std::iter::once(addr.as_str())
        .chain(beacon.as_ref().map(|b| b.0.as_str()))
        .collect();
    if cfg
        .deny
        .iter()
        .any(|d| keys.iter().any(|k| k.eq_ignore_ascii_case(d)))
    {
        return None;
    }
    let allowed: BTreeMap<String, &String> = cfg
        .allow
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v))
        .collect();
    let name = keys
        .iter()
        .find_map(|k| allowed.get(&k.to_ascii_uppercase()));
    let kind = beacon.as_ref().map_or(SightingKind::Generic, |b| b.1);
    let tx = beacon.as_ref().map(|b| b.2);
    match name {
        Some(n) => Some(((*n).clone(), kind, tx)),
        None if cfg.only_allowed => None,
        None => Some((
            parse::hashed_id(salt, keys.last().copied().unwrap_or(&addr)),
            kind,
            tx,
        )),
    }
}

#[async_trait]
impl SensorSource for BleSource {
    fn name(&self) -> String {
        "ble".into()
    }

    fn kind(&self) -> &'static str {
        "ble"
    }

    fn event_time(&self) -> bool {
        false
    }

    async fn run(self: Box<Self>, ctx: SourceCtx) -> anyhow::Result<()> {
        let mut events = self.adapter.events().await?;
        self.adapter.start_scan(ScanFilter::default()).await?;
        loop {
            let ev = tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                ev = events.next() => match ev { Some(e) => e, None => break },
            };
            let id = match ev {
                CentralEvent::DeviceDiscovered(id)
                | CentralEvent::DeviceUpdated(id)
                | CentralEvent::RssiUpdate { id, .. }
                | CentralEvent::ManufacturerDataAdvertisement { id, .. }
                | CentralEvent::ServiceDataAdvertisement { id, .. } => id,
                _ => continue,
            };
            let Ok(p) = self.adapter.peripheral(&id).await else {
                continue;
            };
            let Ok(Some(props)) = p.properties().await else {
                continue;
            };
            let Some(rssi) = props.rssi else { continue };
            if rssi < self.cfg.min_rssi {
                continue;
            }
            let address = props.address.to_string();
            let Some((name, kind, beacon_tx)) = identify(
                &self.cfg,
                &self.salt,
                &address,
                &props.manufacturer_data,
                &props.service_data,
            ) else {
                continue;
            };
            let Ok(device) = DeviceId::parse(&name) else {
                continue;
            };
            let tx_power = beacon_tx.or(props.tx_power_level.and_then(|t| i8::try_from(t).ok()));
            let o = Observation::Ble {
                device,
                rssi: rssi as f32,
                tx_power,
                kind,
                at: chrono::Utc::now(),
            };
            if !ctx.obs(o).await {
                break;
            }
        }
        let _ = self.adapter.stop_scan().await;
        Ok(())
    }
}
