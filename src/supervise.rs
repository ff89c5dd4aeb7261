//! Keeps a hub adapter running: if its task panics (a bug, e.g. an input nobody foresaw), the hub is not
//! lost until the next restart of the program. The adapter is started again after a backoff, with the same
//! event sender and a fresh command queue fed from the hub's own.
//!
//! Commands waiting in the failed adapter's queue are dropped with it; the bridge reports each of them on
//! `<base>/bridge/event` (a reply dropped unanswered), so none vanishes silently. The failure itself is
//! reported as a hub problem, and the hub's link goes down until the new adapter says otherwise.
//!
//! Knows nothing of what an adapter does; only how to start one with a [`HubHandle`].

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::hub::{Command, HubHandle};

/// An adapter that ran this long before failing starts again from the shortest delay.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The backoff between restarts of a failed adapter in production: 1 s, doubling to 5 minutes.
pub fn restart_backoff() -> Backoff {
    Backoff::new(Duration::from_secs(1), Duration::from_secs(300))
}

/// Runs `start(handle)` until it returns or `stop` is cancelled; after a panic, starts it again.
pub async fn supervise<F, Fut>(hub: HubHandle, stop: CancellationToken, mut backoff: Backoff, start: F)
where
    F: Fn(HubHandle) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let HubHandle { id, events, commands: mut from_bridge } = hub;
    loop {
        let (to_adapter, commands) = mpsc::channel::<Command>(from_bridge.max_capacity());
        let started = tokio::time::Instant::now();
        let mut adapter = tokio::spawn(start(HubHandle { id: id.clone(), events: events.clone(), commands }));
        let ended = loop {
            tokio::select! {
                ended = &mut adapter => break Some(ended),
                command = from_bridge.recv() => match command {
                    // If the adapter fails meanwhile, the command (and its reply) is dropped: reported.
                    Some(command) => { let _ = to_adapter.send(command).await; }
                    None => break None,
                },
            }
        };
        let ended = match ended {
            Some(ended) => ended,
            // The bridge is gone: the adapter sees its command queue close, as it would without us.
            None => {
                drop(to_adapter);
                adapter.await
            }
        };
        let panic = match ended {
            Ok(()) => return,
            Err(e) if e.is_panic() => panic_text(e.into_panic()),
            Err(_) => return,
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::error!(hub = %id, "the hub's adapter failed ({panic}); starting it again in {delay:.1?}");
        let _ = events.link(false, Some("internal error; restarting".into())).await;
        let _ = events.problem(None, format!("the adapter failed ({panic}) and is started again")).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The message of a panic, cut (it may quote input).
fn panic_text(payload: Box<dyn Any + Send>) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::hub::{CommandOp, CommandReply, HubEvent, HubEvents};

    fn command(id: u64) -> (Command, tokio::sync::oneshot::Receiver<crate::hub::CommandOutcome>) {
        let (reply, outcome) = CommandReply::channel();
        let command = Command {
            id,
            device: "dev".into(),
            op: CommandOp::Set,
            changes: vec![("switch".into(), json!("ON"))],
            reply,
        };
        (command, outcome)
    }

    /// An adapter that panics on its first command in its first life and answers commands after that.
    #[tokio::test]
    async fn a_panicked_adapter_is_started_again_and_its_lost_command_reported() {
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let hub = HubHandle { id: "test_hub".into(), events: HubEvents::new(0, events_tx), commands: commands_rx };
        let lives = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let adapter_lives = lives.clone();
        let supervisor = tokio::spawn(supervise(
            hub,
            stop.clone(),
            Backoff::new(Duration::from_millis(10), Duration::from_millis(20)),
            move |mut handle: HubHandle| {
                let life = adapter_lives.fetch_add(1, Ordering::SeqCst);
                async move {
                    while let Some(command) = handle.commands.recv().await {
                        if life == 0 {
                            panic!("unforeseen input in command {}", command.id);
                        }
                        command.reply.ok();
                    }
                }
            },
        ));

        let (first, first_outcome) = command(1);
        commands_tx.send(first).await.unwrap();
        let first_outcome = tokio::time::timeout(Duration::from_secs(10), first_outcome).await.unwrap();
        assert!(first_outcome.is_err(), "the command the adapter died with is dropped, for the bridge to report");

        let mut seen = Vec::new();
        while seen.len() < 2 {
            let (_, event) = tokio::time::timeout(Duration::from_secs(10), events_rx.recv()).await.unwrap().unwrap();
            seen.push(event);
        }
        assert!(matches!(&seen[0], HubEvent::Link { up: false, .. }), "{seen:?}");
        match &seen[1] {
            HubEvent::Problem { device: None, reason } => {
                assert!(reason.contains("unforeseen input in command 1"), "{reason}")
            }
            other => panic!("expected a problem report, got {other:?}"),
        }

        let (second, second_outcome) = command(2);
        commands_tx.send(second).await.unwrap();
        let second_outcome = tokio::time::timeout(Duration::from_secs(10), second_outcome).await.unwrap();
        assert!(second_outcome.unwrap().is_ok(), "the new adapter answers");
        assert_eq!(lives.load(Ordering::SeqCst), 2);

        // The bridge going away ends the adapter and the supervisor, without a restart.
        drop(commands_tx);
        tokio::time::timeout(Duration::from_secs(10), supervisor).await.unwrap().unwrap();
        assert_eq!(lives.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn panic_messages_are_read_and_cut() {
        assert_eq!(panic_text(Box::new("static text")), "static text");
        assert_eq!(panic_text(Box::new("x".repeat(1000))).len(), 200);
        assert_eq!(panic_text(Box::new(7_u8)), "a panic");
    }
}
