//! WiFi access points through nl80211 (neli-wifi): the kernel's scan results (bssid,
//! SSID, signal, channel) read at an interval. Triggering scans needs CAP_NET_ADMIN and is
//! left to the system (wpa_supplicant/NetworkManager scan periodically).

use super::parse;
use crate::config::WifiSourceConfig;
use crate::obs::Observation;
use crate::sources::{SensorSource, SourceCtx};
use async_trait::async_trait;
use neli_wifi::Socket;
use roomsense_common::DeviceId;

pub struct WifiSource {
    interfaces: Vec<(i32, String)>,
    interval: std::time::Duration,
}

/// Wireless interfaces `(index, name)` seen through nl80211.
pub fn interfaces() -> anyhow::Result<Vec<(i32, String)>> {
    let mut s = Socket::connect().map_err(|e| {
        anyhow::anyhow!(
            "wifi source: nl80211 is not available on this machine ({e}); no WiFi driver loaded?"
        )
    })?;
    let list = s
        .get_interfaces_info()
        .map_err(|e| anyhow::anyhow!("wifi source: listing interfaces: {e}"))?;
    Ok(list
        .into_iter()
        .filter_map(|i| {
            let name = String::from_utf8_lossy(i.name.as_deref()?)
                .trim_end_matches('\0')
                .to_string();
            Some((i.index?, name))
        })
        .collect())
}

fn scan(interfaces: &[(i32, String)]) -> anyhow::Result<Vec<Observation>> {
    let mut s = Socket::connect().map_err(|e| anyhow::anyhow!("nl80211: {e}"))?;
    let now = chrono::Utc::now();
    let mut out = Vec::new();
    for (idx, _) in interfaces {
        let bss = s
            .get_bss_info(*idx)
            .map_err(|e| anyhow::anyhow!("nl80211 scan dump: {e}"))?;
        for b in bss {
            let (Some(bssid), Some(signal), Some(freq)) = (b.bssid, b.signal, b.frequency) else {
                continue;
            };
            let Ok(id) = DeviceId::parse(&parse::mac(&bssid)) else {
                continue;
            };
            out.push(Observation::Wifi {
                bssid: id,
                ssid: b.information_elements.as_deref().and_then(parse::ssid),
                // nl80211 reports mBm (1/100 dBm).
                rssi: signal as f32 / 100.0,
                channel: parse::channel(freq).unwrap_or(0),
                at: now,
            });
        }
    }
    Ok(out)
}

impl WifiSource {
    pub fn open(c: &WifiSourceConfig) -> anyhow::Result<Self> {
        let all = interfaces()?;
        let interfaces: Vec<(i32, String)> = all
            .into_iter()
            .filter(|(_, n)| c.interface.as_ref().is_none_or(|w| w == n))
            .collect();
        if interfaces.is_empty() {
            anyhow::bail!(
                "wifi source: no wireless interface{} found",
                c.interface
                    .as_ref()
                    .map(|i| format!(" named {i:?}"))
                    .unwrap_or_default()
            );
        }
        Ok(Self {
            interfaces,
            interval: c.interval,
        })
    }
}

#[async_trait]
impl SensorSource for WifiSource {
    fn name(&self) -> String {
        "wifi".into()
    }

    fn kind(&self) -> &'static str {
        "wifi"
    }

    fn event_time(&self) -> bool {
        false
    }

    async fn run(self: Box<Self>, ctx: SourceCtx) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let ifs = self.interfaces.clone();
            let obs = tokio::task::spawn_blocking(move || scan(&ifs)).await??;
            for o in obs {
                if !ctx.obs(o).await {
                    return Ok(());
                }
            }
        }
    }
}
