//! The `axum_service` example, run as a server process and driven by a real
//! HTTP client over a socket: sign-up, CRUD and deletion answer with the
//! documented statuses and bodies, and after many concurrent requests
//! every tenant's schema holds exactly the rows written for it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Stdio};

use tenancy_core::SchemaName;
use tenancy_tests::{admin, count, unique_schema, unregister, url};

#[path = "../../../examples/axum_service/client.rs"]
#[allow(dead_code)]
mod client;

use client::Client;

/// The example serving on a free port, stopped (its standard input closed)
/// when dropped; the tenants a test signed up are dropped too.
struct Service {
    child: Option<Child>,
    addr: SocketAddr,
    tenants: Vec<SchemaName>,
}

impl Service {
    fn start() -> Self {
        let mut cmd = crate::examples::command("axum_service");
        cmd.env("DATABASE_URL", url())
            .args(["--serve", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start the service");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read its address");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .expect("an address");
        Self { child: Some(child), addr, tenants: Vec::new() }
    }

    /// Stops the server as a supervisor would, and says whether it exited cleanly.
    fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        drop(child.stdin.take());
        child.wait().expect("wait for the service").success()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        unregister(&url(), &self.tenants);
        let mut admin = admin();
        for schema in &self.tenants {
            use diesel::connection::SimpleConnection;
            let _ = admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", schema.quoted()));
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

#[test]
fn the_service_answers_a_real_http_client_and_keeps_tenants_apart() {
    let mut service = Service::start();
    let tenants: Vec<SchemaName> = (0..4).map(|_| unique_schema("axs")).collect();
    service.tenants = tenants.clone();
    let client = Client::new(service.addr);
    runtime().block_on(async {
        // Sign-up.
        for t in &tenants {
            let reply = client.post("/tenants", t.as_str()).await.unwrap();
            assert_eq!(reply.status, 201, "{}", reply.body);
            assert_eq!(reply.json()["tenant"], t.as_str());
        }
        let taken = client.post("/tenants", tenants[0].as_str()).await.unwrap();
        assert_eq!((taken.status, taken.json()["error"].as_str()), (409, Some("tenant_exists")));
        let invalid = client.post("/tenants", "Robert'); DROP TABLE students;--").await.unwrap();
        assert_eq!((invalid.status, invalid.json()["error"].as_str()), (400, Some("invalid_tenant_name")));

        // CRUD, and a note of one tenant is not reachable through another.
        let (a, b) = (&tenants[0], &tenants[1]);
        let created = client.post(&format!("/tenants/{a}/notes"), "first").await.unwrap();
        assert_eq!(created.status, 201);
        let id = created.json()["id"].as_i64().unwrap();
        let one = client.get(&format!("/tenants/{a}/notes/{id}")).await.unwrap();
        assert_eq!((one.status, one.json()["body"].as_str()), (200, Some("first")));
        let put = client.send("PUT", &format!("/tenants/{a}/notes/{id}"), "changed").await.unwrap();
        assert_eq!((put.status, put.json()["body"].as_str()), (200, Some("changed")));
        for (method, body) in [("GET", ""), ("PUT", "hijacked"), ("DELETE", "")] {
            let reply = client.send(method, &format!("/tenants/{b}/notes/{id}"), body).await.unwrap();
            assert_eq!(
                (reply.status, reply.json()["error"].as_str()),
                (404, Some("note_not_found")),
                "{method}"
            );
        }
        let empty = client.post(&format!("/tenants/{a}/notes"), "  ").await.unwrap();
        assert_eq!(empty.status, 422);
        assert_eq!(client.send("DELETE", &format!("/tenants/{a}/notes/{id}"), "").await.unwrap().status, 204);
        assert_eq!(client.get(&format!("/tenants/{a}/notes/{id}")).await.unwrap().status, 404);

        // Unknown and invalid tenants: client-safe bodies.
        let unknown = client.get("/tenants/axs_nobody/notes").await.unwrap();
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.json()["error"], "unknown_tenant");
        assert_eq!(unknown.json()["message"], "there is no tenant named \"axs_nobody\"");
        assert_eq!(client.get("/tenants/AXS/notes").await.unwrap().status, 400);

        // Concurrent requests: each tenant writes its own rows, and some
        // requests for one tenant try to reach another's by id.
        const PER_TENANT: usize = 25;
        let mut tasks = Vec::new();
        for t in &tenants {
            for i in 0..PER_TENANT {
                let path = format!("/tenants/{t}/notes");
                let body = format!("{t} {i}");
                tasks.push(tokio::spawn(async move { client.post(&path, &body).await.unwrap() }));
            }
            let probe = format!("/tenants/{t}/notes/1000000");
            tasks.push(tokio::spawn(async move { client.get(&probe).await.unwrap() }));
        }
        let mut created = 0;
        for task in tasks {
            let reply = task.await.unwrap();
            match reply.status {
                201 => created += 1,
                404 => assert_eq!(reply.json()["error"], "note_not_found"),
                other => panic!("unexpected {other}: {}", reply.body),
            }
        }
        assert_eq!(created, PER_TENANT * tenants.len());
        for t in &tenants {
            let list = client.get(&format!("/tenants/{t}/notes")).await.unwrap();
            assert_eq!(list.status, 200);
            let bodies: Vec<String> = list
                .json()
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["body"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(bodies.len(), PER_TENANT, "{t}");
            assert!(
                bodies.iter().all(|body| body.starts_with(&format!("{t} "))),
                "{t} lists others' notes: {bodies:?}"
            );
        }
    });

    // The audit, around the service: what each schema really holds.
    let mut admin = admin();
    for t in &tenants {
        let own = count(
            &mut admin,
            &format!("SELECT count(*) AS n FROM {}.notes WHERE body LIKE $1", t.quoted()),
            &[&format!("{t} %")],
        );
        let all = count(&mut admin, &format!("SELECT count(*) AS n FROM {}.notes", t.quoted()), &[]);
        assert_eq!((own, all), (25, 25), "{t}");
    }

    // Deletion.
    runtime().block_on(async {
        for t in &tenants {
            assert_eq!(client.send("DELETE", &format!("/tenants/{t}"), "").await.unwrap().status, 204);
            let gone = client.get(&format!("/tenants/{t}/notes")).await.unwrap();
            assert_eq!((gone.status, gone.json()["error"].as_str()), (404, Some("unknown_tenant")));
        }
    });
    for t in &tenants {
        let left =
            count(&mut admin, "SELECT count(*) AS n FROM pg_namespace WHERE nspname = $1", &[t.as_str()]);
        assert_eq!(left, 0, "{t} was not dropped");
    }
    assert!(service.stop(), "the service did not exit cleanly when its input closed");
}
