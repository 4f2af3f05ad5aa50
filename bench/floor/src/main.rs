//! The floor: the least a push receiver can do on the relay's own stack (actix-web, lapin with
//! publisher confirms, jemalloc), so BENCHMARKS.md can say what the relay's features cost
//! above it. Per push: parse the form, check the md5 signature, publish the body persistent
//! and mandatory through the same topology as the relay (a topic exchange to a quorum queue
//! and a stream), answer 200 after the broker's ack. No dedup, envelope, seal, trace context,
//! metrics or logging. Not a product: one merchant, fixed names, errors end the process.
//!
//!     weibo-relay-floor [PORT] [SIGN_KEY]   (defaults 18070, bench-sign-key-0123456789)

use actix_web::{web, App, HttpResponse, HttpServer};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EXCHANGE: &str = "weibo-relay-floor.events";
const QUEUE: &str = "weibo-relay-floor.orders";
/// Fields outside the signature, as the platform signs.
const UNSIGNED: [&str; 3] = ["sign", "sign_type", "access_token"];

struct Floor {
    channel: Channel,
    sign_key: String,
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(18070, |p| p.parse().expect("PORT"));
    let sign_key = args
        .next()
        .unwrap_or_else(|| "bench-sign-key-0123456789".into());
    // One actix worker, as bench/receiver.toml gives the relay.
    actix_web::rt::System::new().block_on(async move {
        let channel = topology().await.expect("broker");
        let floor = web::Data::new(Floor { channel, sign_key });
        HttpServer::new(move || {
            App::new()
                .app_data(floor.clone())
                .route("/weibo/push", web::post().to(push))
                .route("/readyz", web::get().to(HttpResponse::Ok))
        })
        .workers(1)
        .bind(("127.0.0.1", port))?
        .run()
        .await
    })
}

/// A confirm channel, and the relay's topology under names of the floor's own.
async fn topology() -> Result<Channel, lapin::Error> {
    let connection = lapin::DefaultConnectionBuilder::new()?
        .with_uri(
            "amqp://guest:guest@127.0.0.1:5672/%2f"
                .parse()
                .expect("uri"),
        )
        .connect()
        .await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    for (queue, kind) in [
        (QUEUE.to_owned(), "quorum"),
        (format!("{QUEUE}.log"), "stream"),
    ] {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.as_str().into(), durable, args)
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                EXCHANGE.into(),
                "order.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    // lapin's connection lives as long as a channel of it does.
    Ok(channel)
}

async fn push(body: web::Bytes, floor: web::Data<Floor>) -> HttpResponse {
    if !verified(&body, &floor.sign_key) {
        return HttpResponse::Unauthorized().finish();
    }
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/x-www-form-urlencoded".into());
    let published = floor
        .channel
        .basic_publish(
            EXCHANGE.into(),
            "order.sub_order.201".into(),
            options,
            &body,
            properties,
        )
        .await;
    match published {
        Ok(confirm) => match confirm.await {
            Ok(Confirmation::Ack(None)) => HttpResponse::Ok().body(r#"{"code":0,"msg":"success"}"#),
            _ => HttpResponse::ServiceUnavailable().finish(),
        },
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// The platform's md5 form: signed fields sorted by name, `k=v` joined by `&`, then the key.
/// Written as tightly as the relay's own parsing, so the floor is not padded with slow code.
fn verified(body: &[u8], key: &str) -> bool {
    let mut fields = Vec::with_capacity(8);
    for part in body.split(|&b| b == b'&') {
        let (k, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &[][..]),
        };
        let (Some(k), Some(v)) = (decode(k), decode(v)) else {
            return false;
        };
        fields.push((k, v));
    }
    fields.sort_unstable();
    let Some(sign) = fields
        .iter()
        .find(|(k, _)| k == "sign")
        .map(|(_, v)| v.clone())
    else {
        return false;
    };
    let mut signed = String::with_capacity(body.len() + key.len());
    for (k, v) in fields
        .iter()
        .filter(|(k, v)| !UNSIGNED.contains(&k.as_str()) && !v.is_empty())
    {
        if !signed.is_empty() {
            signed.push('&');
        }
        signed.push_str(k);
        signed.push('=');
        signed.push_str(v.trim());
    }
    signed.push_str(key);
    let digest = <md5::Md5 as md5::Digest>::digest(signed.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let sign = sign.as_bytes();
    sign.len() == 32
        && digest.iter().enumerate().all(|(i, b)| {
            sign[2 * i].eq_ignore_ascii_case(&HEX[usize::from(b >> 4)])
                && sign[2 * i + 1].eq_ignore_ascii_case(&HEX[usize::from(b & 0x0f)])
        })
}

/// One form-encoded name or value: `+` is a space, `%XX` a byte, in one pass.
fn decode(raw: &[u8]) -> Option<String> {
    let hex = |b: Option<&u8>| char::from(*b?).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
