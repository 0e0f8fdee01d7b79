//! The simulation seam: the same server and `GrpcTransport` over turmoil's simulated network
//! (`serve_with_incoming` on a turmoil listener, `with_connector` on turmoil's connect).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::pending;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use lcache_core::member::Member;
use lcache_transport::{
    ClientConfig, Deadline, GetRequest, GrpcTransport, ServerConfig, SetRequest, Transport,
    TransportError,
};

const PORT: u16 = 9000;

fn get(key: &'static [u8]) -> GetRequest {
    GetRequest {
        group: GROUP.into(),
        key: Bytes::from_static(key),
        forwarded: true,
    }
}

fn transport() -> GrpcTransport {
    let connector = tower::service_fn(|uri: http::Uri| async move {
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or_default();
        turmoil::net::TcpStream::connect((host, port)).await
    });
    let config = ClientConfig {
        connect_timeout: Duration::from_millis(500),
        ..ClientConfig::default()
    };
    GrpcTransport::with_connector(config, connector)
}

#[test]
fn grpc_over_turmoil_with_a_partition() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(7)
        .simulation_duration(Duration::from_secs(60))
        .build();

    sim.host("server", || async {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
        let incoming = futures::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        lcache_transport::serve_with_incoming(
            Fake::new(),
            ServerConfig::default(),
            incoming,
            pending(),
        )
        .await?;
        Ok(())
    });

    sim.client("client", async {
        let t = transport();
        let peer = Member::new("server", format!("server:{PORT}"), 1);
        let timeout = Duration::from_secs(1);
        let set = SetRequest {
            group: GROUP.into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ttl: Some(Duration::from_secs(30)),
            forwarded: true,
        };
        t.set(&peer, set, Deadline::after(timeout)).await?;
        let got = t
            .get(&peer, get(b"k"), Deadline::after(timeout))
            .await?
            .expect("a hit");
        assert_eq!(got.value, Bytes::from_static(b"v"));

        turmoil::partition("client", "server");
        let start = tokio::time::Instant::now();
        let err = t
            .get(&peer, get(b"k"), Deadline::after(timeout))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::DeadlineExceeded { .. } | TransportError::Unreachable { .. }
            ),
            "{err:?}"
        );
        assert!(
            start.elapsed() <= timeout + Duration::from_millis(10),
            "{:?}",
            start.elapsed()
        );

        turmoil::repair("client", "server");
        let mut recovered = false;
        for _ in 0..20 {
            if let Ok(Some(_)) = t.get(&peer, get(b"k"), Deadline::after(timeout)).await {
                recovered = true;
                break;
            }
        }
        assert!(recovered, "the channel recovers after the partition heals");
        Ok(())
    });

    sim.run().unwrap();
}
