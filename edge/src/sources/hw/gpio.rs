//! Door contacts on GPIO pins (rppal): interrupt driven with debounce; the state at start
//! is reported too.

use crate::config::{ActiveLevel, GpioSourceConfig, Pull};
use crate::obs::Observation;
use crate::sources::{SensorSource, SourceCtx};
use async_trait::async_trait;
use roomsense_common::{DoorId, DoorState};
use rppal::gpio::{Gpio, InputPin, Level, Trigger};
use tokio::sync::mpsc;

pub struct GpioSource {
    pins: Vec<(InputPin, DoorId, ActiveLevel, std::time::Duration)>,
}

fn state(level: Level, active: ActiveLevel) -> DoorState {
    let open = match active {
        ActiveLevel::Low => level == Level::Low,
        ActiveLevel::High => level == Level::High,
    };
    if open {
        DoorState::Open
    } else {
        DoorState::Closed
    }
}

impl GpioSource {
    pub fn open(c: &GpioSourceConfig) -> anyhow::Result<Self> {
        let gpio = Gpio::new().map_err(|e| {
            anyhow::anyhow!(
                "gpio source: no usable GPIO chip on this machine ({e}); on a Raspberry Pi check /dev/gpiochip0 and the gpio group, elsewhere use the `sim` source"
            )
        })?;
        let mut pins = Vec::new();
        for p in &c.pins {
            let pin = gpio
                .get(p.pin)
                .map_err(|e| anyhow::anyhow!("gpio source: pin {}: {e}", p.pin))?;
            let input = match p.pull {
                Pull::Up => pin.into_input_pullup(),
                Pull::Down => pin.into_input_pulldown(),
                Pull::None => pin.into_input(),
            };
            pins.push((input, p.door.clone(), p.active, p.debounce));
        }
        Ok(Self { pins })
    }
}

#[async_trait]
impl SensorSource for GpioSource {
    fn name(&self) -> String {
        "gpio".into()
    }

    fn kind(&self) -> &'static str {
        "gpio"
    }

    fn event_time(&self) -> bool {
        false
    }

    async fn run(mut self: Box<Self>, ctx: SourceCtx) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<(usize, DoorState)>(256);
        for (i, (pin, door, active, debounce)) in self.pins.iter_mut().enumerate() {
            let initial = state(pin.read(), *active);
            ctx.obs(Observation::Door {
                door: door.clone(),
                state: initial,
                at: chrono::Utc::now(),
            })
            .await;
            let tx = tx.clone();
            let active = *active;
            pin.set_async_interrupt(Trigger::Both, Some(*debounce), move |ev| {
                let level = match ev.trigger {
                    Trigger::RisingEdge => Level::High,
                    _ => Level::Low,
                };
                let _ = tx.blocking_send((i, state(level, active)));
            })
            .map_err(|e| anyhow::anyhow!("gpio source: interrupt on pin of door {door}: {e}"))?;
        }
        drop(tx);
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Ok(()),
                m = rx.recv() => {
                    let Some((i, st)) = m else { return Ok(()) };
                    let door = self.pins[i].1.clone();
                    if !ctx.obs(Observation::Door { door, state: st, at: chrono::Utc::now() }).await {
                        return Ok(());
                    }
                }
            }
        }
    }
}
