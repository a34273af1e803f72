//! A listen port that another program holds: the default addresses fall back to a free port;
//! an address the user gave is an error that names it and the cause (it printed
//! "listening on /ip4/0.0.0.0/tcp/4001: " and nothing else).

use std::sync::Arc;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use storgo::network::NetworkConfig;
use storgo::node::Node;
use storgo::store::{Store, StoreOptions};

use crate::common::*;
use crate::nodes::*;

fn tcp_port(a: &Multiaddr) -> Option<u16> {
    a.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_falls_back_by_default_and_is_named_when_given() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let wanted: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&tmp.path().join("n"), StoreOptions::default()).unwrap());
    let config = |fallback| NetworkConfig {
        listen: vec![wanted.clone()],
        listen_fallback: fallback,
        ..loopback_config(vec![])
    };

    let refused = Node::start(Arc::clone(&store), config(false)).await;
    let message = refused
        .err()
        .expect("a given port that is taken is an error")
        .to_string();
    assert!(message.contains(&wanted.to_string()), "{message}");
    assert!(message.contains("Address already in use"), "{message}");

    let node = Node::start(Arc::clone(&store), config(true))
        .await
        .expect("falls back to a free port");
    let got = tcp_port(&addr(&node)).unwrap();
    assert_ne!(got, port);
    node.stop().await;

    // The same through the binary: `--listen` is the user's own address, never replaced.
    let mut cli = storgo(&tmp.path().join("cli"));
    cli.args(["node", "--no-mdns", "--listen", &wanted.to_string()]);
    let line = fails(cli);
    assert!(
        line.contains(&wanted.to_string()) && line.contains("Address already in use"),
        "{line}"
    );
    drop(holder);
}

/// A port another storgo node listens on counts as taken, although libp2p's listeners share
/// ports (SO_REUSEPORT): two nodes on one port split inbound connections between two peers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_another_node_holds_is_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let first = start_node(&tmp.path().join("first"), vec![]).await;
    let held = addr(&first);
    let port = tcp_port(&held).unwrap();
    let wanted: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let store = Arc::new(Store::open(&tmp.path().join("second"), StoreOptions::default()).unwrap());
    let config = |fallback| NetworkConfig {
        listen: vec![wanted.clone()],
        listen_fallback: fallback,
        ..loopback_config(vec![])
    };
    let refused = Node::start(Arc::clone(&store), config(false)).await;
    let message = refused
        .err()
        .expect("a port another node holds is taken")
        .to_string();
    assert!(message.contains("Address already in use"), "{message}");
    let second = Node::start(Arc::clone(&store), config(true))
        .await
        .expect("falls back to a free port");
    assert_ne!(tcp_port(&addr(&second)).unwrap(), port);
    for n in [first, second] {
        n.stop().await;
    }
}
