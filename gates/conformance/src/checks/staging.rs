//! StageIn and StageOut (Capabilities.staging): files round trip through a
//! job with their subdirectories, modes and sizes; globs match as the
//! proto defines them; paths that escape the working directory and calls
//! out of order are refused; a staged file can be the job's stdin.

use std::collections::BTreeMap;

use gantry_proto::v1::GateJobState;
use tonic::Code;

use crate::report::Outcome;
use crate::run::{Run, STAGE_CHUNK_BYTES, describe_job, expect_code, said};

/// Why a staging check skips, if it does.
fn unable(run: &Run) -> Option<Outcome> {
    let flagged = run
        .describe
        .capabilities
        .as_ref()
        .is_some_and(|c| c.staging);
    (!flagged).then(|| Outcome::Skip("Capabilities.staging is not flagged".into()))
}

/// A file bigger than one chunk, whose bytes differ along it.
fn big_file() -> Vec<u8> {
    (0..STAGE_CHUNK_BYTES + STAGE_CHUNK_BYTES / 2)
        .map(|i| (i % 251) as u8)
        .collect()
}

/// Stage `files` into a new attempt, run `script` there, and wait for its end.
async fn staged_run(
    run: &Run,
    files: &[(&str, u32, &[u8])],
    script: &str,
) -> Result<String, String> {
    let partition = run.ready_partition()?;
    let attempt = run.new_id("a");
    run.stage_in(&attempt, &partition, files)
        .await
        .map_err(|s| said("StageIn", &s))?;
    run.start_as(&attempt, &partition, run.script_task(script))
        .await
        .map_err(|s| said("StartJob", &s))?;
    let ended = run.wait_final(&attempt).await?;
    if ended.state() != GateJobState::Succeeded {
        let err = run
            .read_log(&attempt, gantry_proto::v1::LogStream::Stderr, 0)
            .await
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default();
        return Err(format!(
            "the job ended {}; stderr {err:?}",
            describe_job(&ended)
        ));
    }
    Ok(attempt)
}

/// Files staged in (one in a subdirectory, one over a chunk, one empty,
/// one executable) reach the job, and what it writes comes back out with
/// the same bytes and the executable bit.
pub async fn round_trip(run: &Run) -> Outcome {
    if let Some(skip) = unable(run) {
        return skip;
    }
    let big = big_file();
    let files: [(&str, u32, &[u8]); 4] = [
        ("in/a.txt", 0o644, b"alpha\n"),
        ("in/sub/big.bin", 0o644, &big),
        ("in/empty", 0o644, b""),
        ("in/tool.sh", 0o755, b"#!/bin/sh\necho tool ran\n"),
    ];
    async {
        let script = "mkdir -p out/sub && cp in/a.txt out/a.txt && cp in/sub/big.bin out/sub/big.bin \
                      && cp in/empty out/empty && in/tool.sh > out/ran && cp in/tool.sh out/tool.sh";
        let attempt = staged_run(run, &files, script).await?;
        let got = run
            .stage_out(&attempt, &["out/**"])
            .await
            .map_err(|s| said("StageOut", &s))?;
        let got: BTreeMap<String, (u32, Vec<u8>)> =
            got.into_iter().map(|(p, m, d)| (p, (m, d))).collect();
        let want: BTreeMap<&str, &[u8]> = [
            ("out/a.txt", &b"alpha\n"[..]),
            ("out/empty", b""),
            ("out/ran", b"tool ran\n"),
            ("out/sub/big.bin", &big),
            ("out/tool.sh", b"#!/bin/sh\necho tool ran\n"),
        ]
        .into();
        let names: Vec<&str> = got.keys().map(String::as_str).collect();
        if names != want.keys().copied().collect::<Vec<_>>() {
            return Err(format!(
                "StageOut of out/** sent {names:?}, expected {:?}",
                want.keys().collect::<Vec<_>>()
            ));
        }
        for (path, data) in &want {
            let (mode, got) = &got[*path];
            if got != data {
                return Err(format!(
                    "{path}: {} bytes came back, {} went in, or they differ",
                    got.len(),
                    data.len()
                ));
            }
            if *path == "out/tool.sh" && mode & 0o100 == 0 {
                return Err(format!("{path} lost its executable bit: mode {mode:o}"));
            }
        }
        Ok(format!(
            "{} files, {} bytes each way",
            want.len(),
            want.values().map(|d| d.len()).sum::<usize>()
        ))
    }
    .await
    .into()
}

/// StageOut's globs: `*` stays in one directory, `**` crosses them,
/// `{a,b}` is either, `[..]` a set, and no match sends nothing.
pub async fn globs(run: &Run) -> Outcome {
    if let Some(skip) = unable(run) {
        return skip;
    }
    async {
        let script = "mkdir -p sub/deep && for f in a.txt b.log c1.dat sub/c.txt sub/deep/d.txt; \
                      do echo $f > $f; done";
        let attempt = staged_run(run, &[], script).await?;
        let cases: [(&[&str], &[&str]); 6] = [
            (&["*.txt"], &["a.txt"]),
            (&["**/*.txt"], &["a.txt", "sub/c.txt", "sub/deep/d.txt"]),
            (&["sub/*.txt"], &["sub/c.txt"]),
            (&["{a,b}.*"], &["a.txt", "b.log"]),
            (&["c[0-9].dat", "b.???"], &["b.log", "c1.dat"]),
            (&["nothing*"], &[]),
        ];
        for (globs, want) in cases {
            let got = run
                .stage_out(&attempt, globs)
                .await
                .map_err(|s| format!("{globs:?}: {}", said("StageOut", &s)))?;
            let mut names: Vec<String> = got.into_iter().map(|(p, _, _)| p).collect();
            names.sort();
            if names != want {
                return Err(format!(
                    "StageOut of {globs:?} sent {names:?}, expected {want:?}"
                ));
            }
        }
        Ok("*, **, {a,b}, [0-9], ? and no match".into())
    }
    .await
    .into()
}

/// Paths that leave the working directory are INVALID_ARGUMENT, both ways.
pub async fn escape(run: &Run) -> Outcome {
    if let Some(skip) = unable(run) {
        return skip;
    }
    async {
        let partition = run.ready_partition()?;
        let mut seen = Vec::new();
        for path in ["../escaped", "/tmp/escaped", "in/../../escaped"] {
            let attempt = run.new_id("a");
            seen.push(expect_code(
                &format!("StageIn of {path:?}"),
                run.stage_in(&attempt, &partition, &[(path, 0o644, b"x")])
                    .await,
                Code::InvalidArgument,
            )?);
        }
        let job = run.run_script("true").await?;
        for glob in ["../*", "/etc/*"] {
            seen.push(expect_code(
                &format!("StageOut of {glob:?}"),
                run.stage_out(&job.attempt_id, &[glob]).await,
                Code::InvalidArgument,
            )?);
        }
        Ok(seen.join("; "))
    }
    .await
    .into()
}

/// StageIn after the attempt started, and StageOut before it ended, are
/// FAILED_PRECONDITION.
pub async fn order(run: &Run) -> Outcome {
    if let Some(skip) = unable(run) {
        return skip;
    }
    async {
        let partition = run.ready_partition()?;
        let job = run.start(run.script_task("sleep 600")).await?;
        let attempt = job.attempt_id;
        let result = async {
            run.wait_for(&attempt, "RUNNING", |j| j.state() == GateJobState::Running)
                .await?;
            let late = expect_code(
                "StageIn after StartJob",
                run.stage_in(&attempt, &partition, &[("late", 0o644, b"x")])
                    .await,
                Code::FailedPrecondition,
            )?;
            let early = expect_code(
                "StageOut while it runs",
                run.stage_out(&attempt, &["*"]).await,
                Code::FailedPrecondition,
            )?;
            Ok(format!("{late}; {early}"))
        }
        .await;
        let _ = run.cancel(&attempt).await;
        let _ = run.wait_final(&attempt).await;
        result
    }
    .await
    .into()
}

/// A staged file named as Task.stdin is the job's standard input; without
/// one it reads /dev/null (ends at once).
pub async fn stdin(run: &Run) -> Outcome {
    if let Some(skip) = unable(run) {
        return skip;
    }
    async {
        let partition = run.ready_partition()?;
        let attempt = run.new_id("a");
        run.stage_in(
            &attempt,
            &partition,
            &[("input/data", 0o644, b"from stdin\n")],
        )
        .await
        .map_err(|s| said("StageIn", &s))?;
        let mut task = run.script_task("cat");
        task.stdin = "input/data".into();
        run.start_as(&attempt, &partition, task)
            .await
            .map_err(|s| said("StartJob", &s))?;
        run.wait_final(&attempt).await?;
        let out = run.stdout(&attempt).await?;
        if out != "from stdin\n" {
            return Err(format!("`cat` with stdin input/data printed {out:?}"));
        }
        let job = run.run_script("cat; echo done").await?;
        let out = run.stdout(&job.attempt_id).await?;
        if out != "done\n" {
            return Err(format!(
                "`cat` without stdin printed {out:?}, expected only done"
            ));
        }
        Ok("the staged file, and /dev/null without one".into())
    }
    .await
    .into()
}
