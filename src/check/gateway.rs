//! Each gateway client's first allowed read interface, called signed but without a token (no
//! token is ever requested by `check`): an interface the platform has answers with a token
//! error; a path or method it does not have is refused as such, which means the catalogue
//! row (`gateway.interfaces`) is wrong.

use super::{line, Line, Status};
use crate::settings::{GatewayClient, PlatformMethod, Settings};
use crate::weibo::{InterfaceCall, WeiboClient};

/// One line per configured gateway client.
pub(super) async fn clients(settings: &Settings) -> Vec<Line> {
    let client = match WeiboClient::new(&settings.weibo) {
        Ok(client) => client,
        Err(e) => return vec![line(Status::Fail, "gateway clients", e.to_string())],
    };
    let mut lines = Vec::new();
    for gateway_client in &settings.gateway.clients {
        lines.push(first_read(settings, &client, gateway_client).await);
    }
    lines
}

async fn first_read(settings: &Settings, client: &WeiboClient, allowed: &GatewayClient) -> Line {
    let what = format!("gateway client {}", allowed.name);
    let read = settings.gateway.interfaces.iter().find(|(name, spec)| {
        spec.method == PlatformMethod::Get && !spec.writes && allowed.allows_interface(name)
    });
    let Some((interface, spec)) = read else {
        return line(
            Status::Note,
            what,
            "no read interface allowed: nothing tried",
        );
    };
    let merchant = settings
        .merchants
        .iter()
        .find(|m| allowed.allows_appid(m.appid().as_str()));
    let Some(merchant) = merchant else {
        return line(
            Status::Note,
            what,
            "no configured merchant among its appids: nothing tried",
        );
    };
    let call = InterfaceCall {
        interface,
        method: spec.method,
        params: &[],
    };
    let probed = tokio::time::timeout(super::TIMEOUT, client.probe(merchant, call)).await;
    match probed {
        Err(_) => line(Status::Fail, what, format!("{interface}: no answer within {:?}", super::TIMEOUT)),
        Ok(Err(why)) => line(Status::Fail, what, format!("{interface}: {why}")),
        Ok(Ok(probe)) if matches!(probe.status, 404 | 405) => line(
            Status::Fail,
            what,
            format!(
                "{interface}: the platform answered HTTP {}{}: no such interface or method there; check gateway.interfaces",
                probe.status,
                probe.code.map_or_else(String::new, |c| format!(" (code {c})"))
            ),
        ),
        Ok(Ok(probe)) => match probe.code {
            Some(code) => line(
                Status::Ok,
                what,
                format!("{interface} answered code {code} without a token (no token is requested): the interface is there"),
            ),
            None => line(
                Status::Note,
                what,
                format!("{interface}: HTTP {} without a platform code", probe.status),
            ),
        },
    }
}
