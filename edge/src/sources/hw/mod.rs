//! Hardware sources: `gpio` (rppal), `ble` (btleplug), `wifi` (nl80211). Each is behind a
//! cargo feature; opening one looks for its hardware and fails with a clear message.

use super::{OpenEnv, SensorSource};
use crate::config::{BleSourceConfig, GpioSourceConfig, WifiSourceConfig};

#[cfg(feature = "ble")]
pub mod ble;
#[cfg(feature = "gpio")]
pub mod gpio;
pub mod parse;
#[cfg(feature = "wifi")]
pub mod wifi;

#[allow(unused_variables)]
pub async fn open_gpio(
    c: &GpioSourceConfig,
    env: &OpenEnv,
) -> anyhow::Result<Box<dyn SensorSource>> {
    #[cfg(feature = "gpio")]
    {
        Ok(Box::new(gpio::GpioSource::open(c)?))
    }
    #[cfg(not(feature = "gpio"))]
    {
        anyhow::bail!("gpio source: not supported in this build (built without the `gpio` feature); use the `sim` source without hardware")
    }
}

#[allow(unused_variables)]
pub async fn open_ble(c: &BleSourceConfig, env: &OpenEnv) -> anyhow::Result<Box<dyn SensorSource>> {
    #[cfg(feature = "ble")]
    {
        Ok(Box::new(ble::BleSource::open(c, env).await?))
    }
    #[cfg(not(feature = "ble"))]
    {
        anyhow::bail!("ble source: not supported in this build (built without the `ble` feature)")
    }
}

#[allow(unused_variables)]
pub async fn open_wifi(
    c: &WifiSourceConfig,
    env: &OpenEnv,
) -> anyhow::Result<Box<dyn SensorSource>> {
    #[cfg(feature = "wifi")]
    {
        Ok(Box::new(wifi::WifiSource::open(c)?))
    }
    #[cfg(not(feature = "wifi"))]
    {
        anyhow::bail!("wifi source: not supported in this build (built without the `wifi` feature)")
    }
}
