//! The event bus on RabbitMQ (`EVENT_BUS=rabbitmq`), through lapin.
//!
//! **Topology.** One durable topic exchange, `shop.events`. A message's routing key is its
//! CloudEvents type (`shop.payment.succeeded.v1`), or `shop.dead-letters` for a dead letter.
//! Every consumer of [`CONSUMERS`] has one durable queue named after it (`payment-service`),
//! bound to each event type it handles: the replicas of a service share their queue and
//! split the work, and every service gets its own copy of an event. The dead-letter queue,
//! `shop.dead-letters`, is bound to its own routing key.
//!
//! **Why every service declares every queue when it connects.** An exchange drops a message
//! that no binding matches, and the publisher confirm still says "stored". If order-service
//! published `shop.order.placed.v1` before inventory-service had ever started, the order
//! would be lost for good. So whichever service connects first declares the whole table
//! (declarations are idempotent), and a queue exists before the first event it must hold.
//! Declarations only add: a binding taken out of the table stays on the broker until it is
//! removed by hand.
//!
//! **Delivery.** At least once. A publish is persistent and returns only after the
//! publisher confirm; a consumer acknowledges by hand after its transaction committed, and
//! RabbitMQ redelivers whatever a closed channel left unacknowledged. The consumers are
//! idempotent (the inbox), so a redelivery changes nothing. Nothing is nacked or requeued
//! here: the consumer runner does its own retries and dead-lettering.
//!
//! **Order.** A queue hands out messages in the order they were published, but unlike a
//! Kafka partition it does not keep the events of one aggregate with one replica: two
//! replicas consuming one queue can handle two events of an order at the same time. A
//! handler checks the state it changes rather than assume the previous event was handled.
//!
//! **Headers.** The kit names the CloudEvents attributes after the Kafka binding (`ce_id`);
//! on RabbitMQ they travel under the AMQP binding's names (`cloudEvents_id`). The partition
//! key travels as the `partitionkey` extension (which the Kafka binding maps to the record
//! key) and the topic as `x-topic`, so a received message is the one that was sent.
//!
//! **Reconnects** are ours rather than lapin's `enable_auto_recover()`, which gives up after
//! a fixed number of attempts; a service must outlive a broker outage of any length. One
//! connection serves the publisher, the consumers and the readiness check. When it is lost,
//! calls fail fast with [`BusError::Unavailable`] (the outbox relay and the consumer runner
//! retry later), and the next call after a growing backoff reconnects and declares the
//! topology again. A receiver whose channel closed fails once and subscribes again on the
//! next call.
//!
//! **TLS.** With an `amqps://` URL the connection is TLS (rustls): the broker's certificate
//! must chain to the system's trust store or to `AMQP_CA_FILE`, and name the URL's host;
//! `AMQP_CLIENT_CERT_FILE`/`AMQP_CLIENT_KEY_FILE` add a client certificate for a broker
//! that requires one. The files are read at every connection, so renewed certificates
//! are used from the next reconnect on.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use futures_util::{FutureExt, StreamExt};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    DefaultConnectionBuilder, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    },
    tcp::{OwnedIdentity, OwnedTLSConfig},
    types::{AMQPValue, FieldTable, ShortString},
};
use secrecy::{ExposeSecret, SecretString};
use shop_model::events::{CONSUMERS, EVENT_TYPES};
use tokio::{runtime::Handle, sync::Mutex, time::Instant};

use super::{
    BusError, DEAD_LETTER_TOPIC, Message, Subscription, headers,
    settings::{AmqpTls, RabbitMqSettings},
};

const EXCHANGE: &str = "shop.events";
/// The prefix of the CloudEvents attributes in the kit (Kafka binding) and on AMQP.
const KIT_ATTRIBUTE_PREFIX: &str = "ce_";
const AMQP_ATTRIBUTE_PREFIX: &str = "cloudEvents_";
const KEY_HEADER: &str = "cloudEvents_partitionkey";
const TOPIC_HEADER: &str = "x-topic";
const DEFAULT_CONTENT_TYPE: &str = "application/json";
/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A broker under a memory or disk alarm blocks publishers without closing the connection;
/// the relay should get an error and retry rather than hang.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(250);
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// The connection to RabbitMQ, shared by the outbox relay, the consumers and the readiness
/// check of a service. Cloning is cheap.
#[derive(Clone)]
pub struct RabbitBus {
    shared: Arc<Shared>,
}

struct Shared {
    target: Arc<Target>,
    prefetch: u16,
    /// The runtime the bus was connected on. lapin runs a connection's background tasks on
    /// the runtime that opens it, so a reconnect made from a short-lived runtime (an HTTP
    /// worker's, through the readiness check) would die with that runtime.
    runtime: Handle,
    link: Mutex<Link>,
}

/// Where to connect, and the topology to declare there.
struct Target {
    url: SecretString,
    tls: AmqpTls,
    client_id: String,
    names: Names,
}

/// The names of the exchange and the queues. Tests give theirs a prefix, so that test runs
/// and the services on the same broker never share a queue.
struct Names {
    prefix: String,
    exchange: ShortString,
}

impl Names {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            prefix: prefix.to_owned(),
            exchange: ShortString::try_new(format!("{prefix}{EXCHANGE}"))?,
        })
    }

    fn queue(&self, consumer: &str) -> Result<ShortString, BusError> {
        short(format!("{}{consumer}", self.prefix))
    }
}

/// The current connection and its publishing channel. Held behind a mutex so that, after
/// a failure, one caller reconnects while the others wait instead of each opening a
/// connection of its own.
struct Link {
    current: Option<Live>,
    /// No reconnect attempt before this instant, so that a broker that is down is not
    /// asked again by every publish and every consumer poll.
    next_attempt: Instant,
    delay: Duration,
}

struct Live {
    connection: Connection,
    /// In confirm mode: every publish is acknowledged by the broker.
    publisher: Channel,
}

impl RabbitBus {
    /// Connects and declares the exchange and every queue of the topology.
    pub async fn connect(settings: &RabbitMqSettings, client_id: &str) -> anyhow::Result<Self> {
        Self::connect_with_namespace(settings, client_id, "").await
    }

    /// [`RabbitBus::connect`], with `namespace` put before the exchange and queue names.
    pub(crate) async fn connect_with_namespace(
        settings: &RabbitMqSettings,
        client_id: &str,
        namespace: &str,
    ) -> anyhow::Result<Self> {
        let runtime = Handle::try_current().context("RabbitMQ needs a tokio runtime")?;
        let target = Target {
            url: settings.url.clone(),
            tls: settings.tls.clone(),
            client_id: client_id.to_owned(),
            names: Names::new(namespace)?,
        };
        let live = target.establish().await.context("connecting to RabbitMQ")?;
        tracing::info!(client_id, "connected to RabbitMQ");
        let shared = Shared {
            target: Arc::new(target),
            prefetch: settings.prefetch,
            runtime,
            link: Mutex::new(Link {
                current: Some(live),
                next_attempt: Instant::now(),
                delay: FIRST_RECONNECT_DELAY,
            }),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// Publishes `message` and returns once the broker has confirmed it.
    pub async fn publish(&self, message: &Message) -> Result<(), BusError> {
        // A message that can never be sent is refused before the broker is involved.
        let (routing_key, properties) = encode(message)?;
        let channel = self.shared.publisher().await?;
        let confirm = channel
            .basic_publish(
                self.shared.target.names.exchange.clone(),
                routing_key,
                // Not `mandatory`: an event type nobody consumes is routed nowhere, and
                // that is fine.
                BasicPublishOptions::default(),
                &message.payload,
                properties,
            )
            .await
            .map_err(unavailable)?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| {
                BusError::Unavailable(format!("no publisher confirm within {CONFIRM_TIMEOUT:?}"))
            })?
            .map_err(unavailable)?;
        match confirmation {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) => Err(BusError::Unavailable(
                "the broker could not store the message (nack)".to_owned(),
            )),
            Confirmation::NotRequested => Err(BusError::Other(
                "the publishing channel is not in confirm mode".to_owned(),
            )),
        }
    }

    /// Starts consuming the queue of `subscription.consumer` (the dead-letter queue for
    /// [`DEAD_LETTER_TOPIC`]), on a channel of its own. The queue is declared and bound to
    /// `subscription.event_types` first, so a consumer missing from [`CONSUMERS`] works
    /// too. `subscription.topics` is for Kafka; routing here is by event type.
    pub async fn subscribe(&self, subscription: &Subscription) -> Result<RabbitReceiver, BusError> {
        let mut receiver = RabbitReceiver {
            shared: Arc::clone(&self.shared),
            subscription: subscription.clone(),
            consumer: None,
            unacked: HashMap::new(),
            next_tag: 1,
            first_live_tag: 1,
        };
        receiver.consumer = Some(Box::new(receiver.start().await?));
        Ok(receiver)
    }

    /// How many messages are ready in the queue of `subscription.consumer` (the ones
    /// delivered and not yet acknowledged are not counted: ask before subscribing).
    pub async fn backlog(&self, subscription: &Subscription) -> Result<u32, BusError> {
        let channel = self.shared.open_channel().await?;
        let declared = channel
            .queue_declare(
                self.shared.target.names.queue(&subscription.consumer)?,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let _ = channel.close(200, "counted".into()).await;
        Ok(declared.message_count())
    }

    /// Readiness: the connection is open and the broker answers on it.
    pub async fn check(&self) -> Result<(), String> {
        let channel = self.shared.publisher().await.map_err(|e| e.to_string())?;
        let exists = channel.exchange_declare(
            self.shared.target.names.exchange.clone(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        );
        match tokio::time::timeout(CHECK_TIMEOUT, exists).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("RabbitMQ: {e}")),
            Err(_) => Err(format!("RabbitMQ did not answer within {CHECK_TIMEOUT:?}")),
        }
    }
}

impl Shared {
    /// The publishing channel, after reconnecting if the connection was lost.
    async fn publisher(&self) -> Result<Channel, BusError> {
        let mut link = self.link.lock().await;
        Ok(self.live(&mut link).await?.publisher.clone())
    }

    /// A new channel on the connection, after reconnecting if it was lost.
    async fn open_channel(&self) -> Result<Channel, BusError> {
        let mut link = self.link.lock().await;
        let live = self.live(&mut link).await?;
        live.connection.create_channel().await.map_err(unavailable)
    }

    /// The live connection and publishing channel, replacing whichever was lost. A working
    /// connection is never taken out of `link` across an await, so a caller that gives up
    /// half-way (a timeout, a shutdown) cannot lose it.
    async fn live<'a>(&self, link: &'a mut Link) -> Result<&'a Live, BusError> {
        let connected = link
            .current
            .as_ref()
            .is_some_and(|live| live.connection.status().connected());
        if !connected {
            if link.current.take().is_some() {
                tracing::warn!("RabbitMQ connection lost; reconnecting");
            }
            if Instant::now() < link.next_attempt {
                return Err(BusError::Unavailable(
                    "not connected to RabbitMQ; waiting before the next attempt".to_owned(),
                ));
            }
            let target = Arc::clone(&self.target);
            let attempt = self
                .runtime
                .spawn(async move { target.establish().await })
                .await
                .unwrap_or_else(|e| Err(BusError::Unavailable(format!("reconnecting: {e}"))));
            match attempt {
                Ok(live) => {
                    tracing::info!(client_id = %self.target.client_id, "reconnected to RabbitMQ");
                    link.delay = FIRST_RECONNECT_DELAY;
                    link.current = Some(live);
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = link.delay.as_millis(),
                        "reconnecting to RabbitMQ failed"
                    );
                    link.next_attempt = Instant::now() + link.delay;
                    link.delay = (link.delay * 2).min(MAX_RECONNECT_DELAY);
                    return Err(e);
                }
            }
        }
        let Some(live) = link.current.as_mut() else {
            return Err(BusError::Unavailable(
                "not connected to RabbitMQ".to_owned(),
            ));
        };
        if !live.publisher.status().connected() {
            // The broker closed this channel only (after a publish to a deleted exchange,
            // say): a new one declares the topology again; the consumers are unaffected.
            tracing::warn!("RabbitMQ publishing channel closed; opening a new one");
            live.publisher = self.target.open_publisher(&live.connection).await?;
        }
        Ok(live)
    }
}

impl Target {
    async fn establish(&self) -> Result<Live, BusError> {
        let properties =
            ConnectionProperties::default().with_connection_name(self.client_id.clone().into());
        let connect = DefaultConnectionBuilder::new()
            .map_err(unavailable)?
            .with_uri_str(self.url.expose_secret().to_owned())
            .with_properties(properties)
            .with_tls_config(self.tls_config()?);
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect.connect())
            .await
            .map_err(|_| {
                BusError::Unavailable(format!("no connection within {CONNECT_TIMEOUT:?}"))
            })?
            .map_err(unavailable)?;
        let publisher = self.open_publisher(&connection).await?;
        Ok(Live {
            connection,
            publisher,
        })
    }

    /// What `amqps://` trusts and presents, read from the files now. Ignored by `amqp://`.
    fn tls_config(&self) -> Result<OwnedTLSConfig, BusError> {
        let read = |path: &str| {
            std::fs::read(path).map_err(|e| BusError::Unavailable(format!("reading {path}: {e}")))
        };
        let cert_chain = match &self.tls.ca_file {
            Some(path) => Some(
                String::from_utf8(read(path)?)
                    .map_err(|_| BusError::Unavailable(format!("{path} is not PEM text")))?,
            ),
            None => None,
        };
        let identity = match &self.tls.client_identity {
            Some(identity) => Some(OwnedIdentity::PKCS8 {
                pem: read(&identity.certificate)?,
                key: read(&identity.key)?,
            }),
            None => None,
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }

    /// A channel in confirm mode, after declaring the whole topology on it.
    async fn open_publisher(&self, connection: &Connection) -> Result<Channel, BusError> {
        let channel = connection.create_channel().await.map_err(unavailable)?;
        self.declare_exchange(&channel).await?;
        for consumer in CONSUMERS {
            self.declare_queue(&channel, consumer.name, consumer.event_types)
                .await?;
        }
        self.declare_queue(&channel, DEAD_LETTER_TOPIC, &[DEAD_LETTER_TOPIC])
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        Ok(channel)
    }

    async fn declare_exchange(&self, channel: &Channel) -> Result<(), BusError> {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.names.exchange.clone(),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }

    /// Declares the durable queue of `consumer` and binds it to each of `routing_keys`.
    async fn declare_queue(
        &self,
        channel: &Channel,
        consumer: &str,
        routing_keys: &[&str],
    ) -> Result<(), BusError> {
        let queue = self.names.queue(consumer)?;
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue.clone(), options, FieldTable::default())
            .await
            .map_err(unavailable)?;
        for routing_key in routing_keys {
            channel
                .queue_bind(
                    queue.clone(),
                    self.names.exchange.clone(),
                    short(*routing_key)?,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// Receives the messages of one subscription, on a channel of its own.
pub struct RabbitReceiver {
    shared: Arc<Shared>,
    subscription: Subscription,
    /// `None` after the channel closed, until the next call to `next` subscribes again.
    /// The consumer keeps its channel open; dropping it closes the channel, and RabbitMQ
    /// requeues what it had not seen acknowledged. Boxed, because a lapin consumer is
    /// large and the kit's `Receiver` enum would be as large for every bus.
    consumer: Option<Box<Consumer>>,
    /// The deliveries handed out and not yet acknowledged. The tags handed out are ours,
    /// not RabbitMQ's: RabbitMQ numbers deliveries per channel from 1, so after a new
    /// channel an old tag would name a different message, and acknowledging it would lose
    /// that one.
    unacked: HashMap<u64, Acker>,
    next_tag: u64,
    /// Tags below this were delivered on a channel that has closed since.
    first_live_tag: u64,
}

impl RabbitReceiver {
    /// The next message and the tag to acknowledge it with. An error means the channel or
    /// the connection is gone: call again after a pause to subscribe again.
    pub async fn next(&mut self) -> Result<(Message, u64), BusError> {
        let consumer = match &mut self.consumer {
            Some(consumer) => consumer,
            None => {
                let consumer = self.start().await?;
                tracing::info!(consumer = %self.subscription.consumer, "RabbitMQ consumer resumed");
                self.consumer.insert(Box::new(consumer))
            }
        };
        let error = match consumer.next().await {
            Some(Ok(delivery)) => return Ok(self.hand_out(delivery)),
            Some(Err(e)) => e.to_string(),
            None => "the broker cancelled the consumer".to_owned(),
        };
        tracing::warn!(
            consumer = %self.subscription.consumer,
            error,
            "RabbitMQ consumer stopped; subscribing again on the next call"
        );
        self.consumer = None;
        self.unacked.clear();
        self.first_live_tag = self.next_tag;
        Err(BusError::Unavailable(error))
    }

    /// A message that has already arrived, without waiting for one. A consumer that
    /// failed meanwhile is left for [`Self::next`] to report and restart.
    pub fn ready(&mut self) -> Option<(Message, u64)> {
        match self.consumer.as_mut()?.next().now_or_never() {
            Some(Some(Ok(delivery))) => Some(self.hand_out(delivery)),
            _ => None,
        }
    }

    fn hand_out(&mut self, delivery: lapin::message::Delivery) -> (Message, u64) {
        let message = decode(
            delivery.routing_key.as_str(),
            &delivery.properties,
            delivery.data,
        );
        let tag = self.next_tag;
        self.next_tag += 1;
        self.unacked.insert(tag, delivery.acker);
        (message, tag)
    }

    /// Acknowledges the delivery `delivery_tag` (from [`RabbitReceiver::next`]). Fails if
    /// its channel has closed; RabbitMQ then delivers the message again.
    pub async fn ack(&mut self, delivery_tag: u64) -> Result<(), BusError> {
        let Some(acker) = self.unacked.remove(&delivery_tag) else {
            return Err(if delivery_tag < self.first_live_tag {
                BusError::Unavailable(format!(
                    "delivery {delivery_tag} came on a channel that has closed; \
                     RabbitMQ delivers it again"
                ))
            } else {
                BusError::Other(format!(
                    "unknown or already acknowledged delivery {delivery_tag}"
                ))
            });
        };
        match acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            // `false`: lapin knows the channel is closed and sent nothing.
            Ok(false) => Err(BusError::Unavailable(format!(
                "the channel of delivery {delivery_tag} has closed; RabbitMQ delivers it again"
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Opens a channel and starts consuming. The queue is declared and bound again (it is
    /// idempotent), so a queue deleted by hand comes back.
    async fn start(&self) -> Result<Consumer, BusError> {
        let shared = &self.shared;
        let channel = shared.open_channel().await?;
        let consumer_name = self.subscription.consumer.as_str();
        let routing_keys = if consumer_name == DEAD_LETTER_TOPIC {
            vec![DEAD_LETTER_TOPIC]
        } else {
            self.subscription.event_types.clone()
        };
        shared.target.declare_exchange(&channel).await?;
        shared
            .target
            .declare_queue(&channel, consumer_name, &routing_keys)
            .await?;
        channel
            .basic_qos(shared.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        channel
            .basic_consume(
                shared.target.names.queue(consumer_name)?,
                // The tag shows in `rabbitmqctl list_consumers`; the broker picks one if
                // the client id does not fit.
                ShortString::try_new(shared.target.client_id.as_str())
                    .unwrap_or_else(|_| "".into()),
                // `no_ack: false`: acknowledged by hand, after the handler committed.
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)
    }
}

/// Every lapin error is a failure of the broker or of the link to it, and retrying later
/// on a new channel is the answer; [`BusError::Other`] is kept for a message that can
/// never be sent as it is.
fn unavailable(error: lapin::Error) -> BusError {
    BusError::Unavailable(error.to_string())
}

/// AMQP short strings (names, routing keys) hold at most 255 bytes; lapin panics on a
/// longer one converted with `into()`.
fn short(value: impl Into<String>) -> Result<ShortString, BusError> {
    let value = value.into();
    ShortString::try_new(value.as_str())
        .map_err(|_| BusError::Other(format!("`{value}` is longer than 255 bytes")))
}

/// The routing key and the AMQP properties of `message`.
fn encode(message: &Message) -> Result<(ShortString, BasicProperties), BusError> {
    // A dead letter keeps the `ce_type` of the event that failed: the topic decides first.
    let routing_key = if message.topic == DEAD_LETTER_TOPIC {
        DEAD_LETTER_TOPIC
    } else {
        message.header(headers::TYPE).ok_or_else(|| {
            BusError::Other(format!(
                "a message without `{}` cannot be routed",
                headers::TYPE
            ))
        })?
    };
    let mut table = FieldTable::default();
    for (name, value) in &message.headers {
        table.insert(short(amqp_header_name(name))?, string_value(value));
    }
    table.insert(KEY_HEADER.into(), string_value(&message.key));
    table.insert(TOPIC_HEADER.into(), string_value(&message.topic));
    let content_type = message
        .header(headers::CONTENT_TYPE)
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    let properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(short(content_type)?)
        .with_headers(table);
    Ok((short(routing_key)?, properties))
}

/// The message `encode` was given. Messages published by other means (by hand in the
/// management UI, say) get their topic from the routing key; header values that are not
/// strings (RabbitMQ's own `x-death`, for one) are left out.
fn decode(routing_key: &str, properties: &BasicProperties, payload: Vec<u8>) -> Message {
    let mut headers = BTreeMap::new();
    let mut key = None;
    let mut topic = None;
    for (name, value) in properties.headers().iter().flatten() {
        let value = match value {
            AMQPValue::LongString(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
            AMQPValue::ShortString(value) => value.as_str().to_owned(),
            _ => continue,
        };
        match name.as_str() {
            KEY_HEADER => key = Some(value),
            TOPIC_HEADER => topic = Some(value),
            name => {
                headers.insert(kit_header_name(name), value);
            }
        }
    }
    let topic = topic.unwrap_or_else(|| {
        EVENT_TYPES
            .iter()
            .find(|(event_type, _)| *event_type == routing_key)
            .map_or(routing_key, |(_, topic)| topic)
            .to_owned()
    });
    Message {
        topic,
        key: key.unwrap_or_default(),
        headers,
        payload,
    }
}

fn string_value(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

/// `ce_id` → `cloudEvents_id`; other names are the same on both sides.
fn amqp_header_name(name: &str) -> String {
    match name.strip_prefix(KIT_ATTRIBUTE_PREFIX) {
        Some(attribute) => format!("{AMQP_ATTRIBUTE_PREFIX}{attribute}"),
        None => name.to_owned(),
    }
}

/// `cloudEvents_id` → `ce_id`.
fn kit_header_name(name: &str) -> String {
    match name.strip_prefix(AMQP_ATTRIBUTE_PREFIX) {
        Some(attribute) => format!("{KIT_ATTRIBUTE_PREFIX}{attribute}"),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    //! Against a real RabbitMQ: `TEST_AMQP_URL`, else `AMQP_URL`, else the local default.
    //! Each test works in a namespace of its own (its own exchange and queues), deleted at
    //! the end.

    use std::{future::Future, net::SocketAddr};

    use lapin::{
        options::{ExchangeDeleteOptions, QueueDeleteOptions},
        uri::AMQPUri,
    };
    use shop_model::events::{
        Event, OrderPlaced, PaymentSucceeded, StockReleased, StockReserved, UserRegistered,
    };
    use tokio::{
        net::{TcpListener, TcpStream},
        sync::watch,
        time::timeout,
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn settings() -> RabbitMqSettings {
        let url = std::env::var("TEST_AMQP_URL")
            .or_else(|_| std::env::var("AMQP_URL"))
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        RabbitMqSettings {
            url: url.into(),
            prefetch: 8,
            tls: AmqpTls::default(),
        }
    }

    async fn test_bus(settings: &RabbitMqSettings) -> RabbitBus {
        let namespace = format!("test-{}.", uuid::Uuid::new_v4().simple());
        RabbitBus::connect_with_namespace(settings, "rabbitmq-test", &namespace)
            .await
            .expect("RabbitMQ answers at TEST_AMQP_URL, AMQP_URL or 127.0.0.1:5672")
    }

    impl RabbitBus {
        /// Messages ready (not delivered to a consumer) in the queue of `consumer`.
        async fn ready_messages(&self, consumer: &str) -> u32 {
            let channel = self.shared.open_channel().await.expect("a channel");
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let queue = self
                .shared
                .target
                .names
                .queue(consumer)
                .expect("a valid name");
            channel
                .queue_declare(queue, options, FieldTable::default())
                .await
                .expect("the queue exists")
                .message_count()
        }

        async fn delete_topology(&self) {
            let channel = self.shared.open_channel().await.expect("a channel");
            let queues = CONSUMERS.iter().map(|c| c.name).chain([DEAD_LETTER_TOPIC]);
            for consumer in queues {
                let queue = self
                    .shared
                    .target
                    .names
                    .queue(consumer)
                    .expect("a valid name");
                channel
                    .queue_delete(queue, QueueDeleteOptions::default())
                    .await
                    .expect("queue deleted");
            }
            channel
                .exchange_delete(
                    self.shared.target.names.exchange.clone(),
                    ExchangeDeleteOptions::default(),
                )
                .await
                .expect("exchange deleted");
        }
    }

    /// A message as the outbox relay publishes it: every CloudEvents attribute and a
    /// `traceparent`.
    fn event<E: Event>() -> Message {
        let key = uuid::Uuid::now_v7().to_string();
        let headers = [
            (headers::ID, uuid::Uuid::now_v7().to_string()),
            (headers::SOURCE, "/rabbitmq-test".to_owned()),
            (headers::TYPE, E::TYPE.to_owned()),
            (headers::SPEC_VERSION, "1.0".to_owned()),
            (headers::TIME, "2026-01-02T03:04:05.678Z".to_owned()),
            (headers::SUBJECT, key.clone()),
            (headers::CONTENT_TYPE, "application/json".to_owned()),
            (
                headers::TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            ),
        ];
        Message {
            topic: E::TOPIC.to_owned(),
            payload: format!(r#"{{"order_id":"{key}"}}"#).into_bytes(),
            key,
            headers: headers.map(|(n, v)| (n.to_owned(), v)).into(),
        }
    }

    fn subscription(consumer: &str) -> Subscription {
        let event_types = CONSUMERS
            .iter()
            .find(|c| c.name == consumer)
            .map_or(Vec::new(), |c| c.event_types.to_vec());
        Subscription {
            consumer: consumer.to_owned(),
            topics: Vec::new(),
            event_types,
        }
    }

    /// The outbox relay and the consumer runner use the bus from spawned tasks.
    const _: fn(RabbitBus, RabbitReceiver, Message) = |bus, mut receiver, message| {
        tokio::spawn(async move {
            let _ = bus.publish(&message).await;
            let _ = bus.check().await;
            let _ = bus.subscribe(&subscription("order-service")).await;
            if let Ok((_, tag)) = receiver.next().await {
                let _ = receiver.ack(tag).await;
            }
        });
    };

    async fn receive(receiver: &mut RabbitReceiver) -> (Message, u64) {
        timeout(WAIT, receiver.next())
            .await
            .expect("a message in time")
            .expect("the receiver works")
    }

    /// Calls `attempt` until it returns `Some`, pausing between calls like the relay and
    /// the consumer runner do, for at most `limit`.
    async fn eventually<T, F: Future<Output = Option<T>>>(
        limit: Duration,
        mut attempt: impl FnMut() -> F,
    ) -> T {
        timeout(limit, async {
            loop {
                if let Some(value) = attempt().await {
                    return value;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the condition holds in time")
    }

    #[test]
    fn attributes_travel_under_the_amqp_binding_names_and_come_back_unchanged() {
        let mut message = event::<PaymentSucceeded>();
        message
            .headers
            .insert(headers::DEAD_LETTER_ERROR.to_owned(), "boom".to_owned());

        let (routing_key, properties) = encode(&message).expect("encodes");

        assert_eq!(routing_key.as_str(), PaymentSucceeded::TYPE);
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(
            properties.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        let table = properties.headers().clone().expect("headers");
        let names: Vec<&str> = table.inner().keys().map(ShortString::as_str).collect();
        for name in [
            "cloudEvents_id",
            "cloudEvents_type",
            "cloudEvents_partitionkey",
            "traceparent",
            "content-type",
            "x-dead-letter-error",
            "x-topic",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.starts_with("ce_")), "{names:?}");
        let payload = message.payload.clone();
        assert_eq!(decode(routing_key.as_str(), &properties, payload), message);
    }

    #[test]
    fn a_dead_letter_is_routed_by_its_topic_not_by_the_type_it_keeps() {
        let mut message = event::<PaymentSucceeded>();
        message.topic = DEAD_LETTER_TOPIC.to_owned();

        let (routing_key, _) = encode(&message).expect("encodes");

        assert_eq!(routing_key.as_str(), DEAD_LETTER_TOPIC);
    }

    #[test]
    fn a_message_that_cannot_be_routed_is_refused_without_a_panic() {
        let mut untyped = event::<PaymentSucceeded>();
        untyped.headers.remove(headers::TYPE);
        assert!(matches!(encode(&untyped), Err(BusError::Other(_))));

        let mut too_long = event::<PaymentSucceeded>();
        too_long
            .headers
            .insert(headers::TYPE.to_owned(), "x".repeat(300));
        assert!(matches!(encode(&too_long), Err(BusError::Other(_))));
    }

    #[test]
    fn a_message_published_by_other_means_gets_its_topic_from_the_routing_key() {
        let message = decode(
            OrderPlaced::TYPE,
            &BasicProperties::default(),
            b"{}".to_vec(),
        );

        assert_eq!(message.topic, OrderPlaced::TOPIC);
        assert_eq!(message.key, "");
        assert!(message.headers.is_empty());
    }

    #[tokio::test]
    async fn a_published_message_is_received_identical() {
        let bus = test_bus(&settings()).await;
        let mut receiver = bus
            .subscribe(&subscription("order-service"))
            .await
            .expect("subscribed");
        let sent = event::<PaymentSucceeded>();

        bus.publish(&sent).await.expect("published");

        let (received, tag) = receive(&mut receiver).await;
        assert_eq!(received, sent);
        receiver.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn a_message_published_before_its_consumer_ever_subscribed_is_delivered() {
        let bus = test_bus(&settings()).await;
        let sent = event::<UserRegistered>();

        bus.publish(&sent).await.expect("published");
        let mut receiver = bus
            .subscribe(&subscription("payment-service"))
            .await
            .expect("subscribed");

        let (received, tag) = receive(&mut receiver).await;
        assert_eq!(received, sent);
        receiver.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn a_consumer_queue_receives_only_the_event_types_bound_to_it() {
        let bus = test_bus(&settings()).await;
        let unbound = [event::<OrderPlaced>(), event::<StockReleased>()];
        let bound = event::<StockReserved>();

        for message in unbound.iter().chain([&bound]) {
            bus.publish(message).await.expect("published");
        }

        // Confirmed means routed: the counts are final.
        assert_eq!(bus.ready_messages("payment-service").await, 1);
        assert_eq!(bus.ready_messages("inventory-service").await, 1);
        let mut receiver = bus
            .subscribe(&subscription("payment-service"))
            .await
            .expect("subscribed");
        let (received, tag) = receive(&mut receiver).await;
        assert_eq!(received, bound);
        receiver.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn an_unacknowledged_message_is_delivered_again_to_the_next_receiver() {
        let bus = test_bus(&settings()).await;
        let consumer = subscription("order-service");
        let sent = event::<PaymentSucceeded>();
        bus.publish(&sent).await.expect("published");
        let mut first = bus.subscribe(&consumer).await.expect("subscribed");
        let (received, _) = receive(&mut first).await;
        assert_eq!(received, sent);

        drop(first);

        let mut second = bus.subscribe(&consumer).await.expect("subscribed");
        let (again, tag) = receive(&mut second).await;
        assert_eq!(again, sent);
        second.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn an_acknowledged_message_is_not_delivered_again() {
        let bus = test_bus(&settings()).await;
        let consumer = subscription("order-service");
        let (done, next) = (event::<PaymentSucceeded>(), event::<PaymentSucceeded>());
        bus.publish(&done).await.expect("published");
        let mut first = bus.subscribe(&consumer).await.expect("subscribed");
        let (_, tag) = receive(&mut first).await;
        first.ack(tag).await.expect("acknowledged");
        assert!(first.ack(tag).await.is_err(), "a tag is acknowledged once");
        drop(first);

        bus.publish(&next).await.expect("published");
        let mut second = bus.subscribe(&consumer).await.expect("subscribed");

        let (received, tag) = receive(&mut second).await;
        assert_eq!(
            received, next,
            "the queue starts after the acknowledged message"
        );
        second.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn a_dead_letter_arrives_on_the_dead_letter_queue_with_its_headers() {
        let bus = test_bus(&settings()).await;
        let mut dead_letter = event::<PaymentSucceeded>();
        dead_letter.topic = DEAD_LETTER_TOPIC.to_owned();
        for (name, value) in [
            (headers::DEAD_LETTER_ERROR, "the order does not exist"),
            (headers::DEAD_LETTER_TOPIC, PaymentSucceeded::TOPIC),
            (headers::DEAD_LETTER_CONSUMER, "order-service"),
            (headers::DEAD_LETTER_AT, "2026-01-02T03:04:06Z"),
        ] {
            dead_letter
                .headers
                .insert(name.to_owned(), value.to_owned());
        }

        bus.publish(&dead_letter).await.expect("published");

        assert_eq!(
            bus.ready_messages("order-service").await,
            0,
            "not routed by the type it keeps"
        );
        let mut receiver = bus
            .subscribe(&subscription(DEAD_LETTER_TOPIC))
            .await
            .expect("subscribed");
        let (received, tag) = receive(&mut receiver).await;
        assert_eq!(received, dead_letter);
        receiver.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn the_readiness_check_passes_when_the_broker_answers() {
        let bus = test_bus(&settings()).await;

        assert_eq!(bus.check().await, Ok(()));

        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn publishing_declares_the_topology_again_after_the_broker_closed_the_channel() {
        let bus = test_bus(&settings()).await;
        let admin = bus.shared.open_channel().await.expect("a channel");
        admin
            .exchange_delete(
                bus.shared.target.names.exchange.clone(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .expect("exchange deleted");
        let message = event::<PaymentSucceeded>();

        let refused = bus.publish(&message).await;
        assert!(
            matches!(refused, Err(BusError::Unavailable(_))),
            "{refused:?}"
        );
        bus.publish(&message)
            .await
            .expect("published on a new channel");

        assert_eq!(bus.ready_messages("order-service").await, 1, "bound again");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn a_receiver_whose_consumer_was_cancelled_subscribes_again() {
        let bus = test_bus(&settings()).await;
        let mut receiver = bus
            .subscribe(&subscription("order-service"))
            .await
            .expect("subscribed");
        let admin = bus.shared.open_channel().await.expect("a channel");
        let queue = bus
            .shared
            .target
            .names
            .queue("order-service")
            .expect("a name");
        admin
            .queue_delete(queue, QueueDeleteOptions::default())
            .await
            .expect("queue deleted");

        let stopped = timeout(WAIT, receiver.next())
            .await
            .expect("noticed in time");
        assert!(
            matches!(stopped, Err(BusError::Unavailable(_))),
            "{stopped:?}"
        );
        let sent = event::<PaymentSucceeded>();
        // The next call declares the queue again; until then a message would be dropped,
        // so the message is published until it arrives.
        let publishing = async {
            loop {
                bus.publish(&sent).await.expect("published");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let (received, tag) = timeout(WAIT, async {
            tokio::select! {
                delivery = receiver.next() => delivery.expect("subscribed again"),
                () = publishing => unreachable!(),
            }
        })
        .await
        .expect("a message in time");

        assert_eq!(received, sent);
        receiver.ack(tag).await.expect("acknowledged");
        bus.delete_topology().await;
    }

    #[tokio::test]
    async fn publishing_and_consuming_resume_after_the_connection_is_lost() {
        let proxy = Proxy::start(&settings()).await;
        let bus = test_bus(&proxy.settings).await;
        let mut receiver = bus
            .subscribe(&subscription("order-service"))
            .await
            .expect("subscribed");
        let before = event::<PaymentSucceeded>();
        bus.publish(&before).await.expect("published");
        let (_, stale_tag) = receive(&mut receiver).await;

        proxy.cut();

        let error = timeout(WAIT, receiver.next())
            .await
            .expect("noticed in time");
        assert!(matches!(error, Err(BusError::Unavailable(_))), "{error:?}");
        assert!(receiver.ack(stale_tag).await.is_err());
        let after = event::<PaymentSucceeded>();
        let refused = bus.publish(&after).await;
        assert!(
            matches!(refused, Err(BusError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(bus.check().await.is_err());

        proxy.restore();

        eventually(WAIT * 3, || async { bus.publish(&after).await.ok() }).await;
        assert_eq!(bus.check().await, Ok(()));
        // The consumer comes back, and gets the message it had not acknowledged again.
        let mut received = Vec::new();
        timeout(WAIT * 3, async {
            while !(received.contains(&before) && received.contains(&after)) {
                match receiver.next().await {
                    Ok((message, tag)) => {
                        receiver.ack(tag).await.expect("acknowledged");
                        received.push(message);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
        .await
        .expect("both messages in time");
        bus.delete_topology().await;
    }

    /// A TCP proxy in front of RabbitMQ that a test can cut, like a broker restart or a
    /// network failure: open connections are dropped and new ones closed at once, until
    /// it is restored.
    struct Proxy {
        settings: RabbitMqSettings,
        up: watch::Sender<bool>,
    }

    impl Proxy {
        async fn start(target: &RabbitMqSettings) -> Self {
            let mut uri: AMQPUri = target.url.expose_secret().parse().expect("an AMQP URL");
            let broker = format!("{}:{}", uri.authority.host, uri.authority.port);
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
            let address: SocketAddr = listener.local_addr().expect("bound");
            uri.authority.host = address.ip().to_string();
            uri.authority.port = address.port();
            let (up, _) = watch::channel(true);
            let state = up.subscribe();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let mut state = state.clone();
                    if !*state.borrow() {
                        continue;
                    }
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(broker).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = state.wait_for(|up| !*up) => {}
                        }
                    });
                }
            });
            Self {
                settings: RabbitMqSettings {
                    url: uri.to_string().into(),
                    prefetch: target.prefetch,
                    tls: AmqpTls::default(),
                },
                up,
            }
        }

        fn cut(&self) {
            self.up.send_replace(false);
        }

        fn restore(&self) {
            self.up.send_replace(true);
        }
    }
}
