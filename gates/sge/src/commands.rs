//! Grid Engine's commands and what their output means: `qconf -sql`/`-sq`
//! and `qhost -q -xml` (the queues and their hosts), `qsub -terse`,
//! `qstat -xml` and `qstat -j` (queued and running jobs, with why they
//! wait), `qacct -j` (a job that has left qstat), `qdel`. The gate runs
//! them with `TZ=UTC`, so the times they print are UTC.

use std::collections::BTreeMap;

use gantry_gate::{GateError, Host, Result};
use jiff::civil::DateTime;

/// One execution host as `qhost -q -xml` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecHost {
    /// Its name.
    pub name: String,
    /// Its memory, bytes (0: not known, e.g. its execd is down).
    pub memory_bytes: u64,
    /// Its queue instances: queue name, slots, state letters.
    pub queues: Vec<(String, u32, String)>,
}

/// A queue's own settings, from `qconf -sq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueConf {
    /// Its name.
    pub name: String,
    /// Its hard run-time limit in seconds (0: none).
    pub h_rt: u64,
}

/// A job `qstat -xml` lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    /// Its job id.
    pub id: u64,
    /// Its name (`-N`).
    pub name: String,
    /// Its state letters: `qw`, `hqw`, `r`, `Eqw`, `dr`, ...
    pub state: String,
    /// Unix seconds it started (0: not yet).
    pub start_time: i64,
}

/// A finished job as `qacct -j` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounted {
    /// Grid Engine's `failed` code (0: the job ran and ended by itself).
    pub failed: u32,
    /// What `failed` means, as qacct says it.
    pub failed_text: String,
    /// The job script's exit status (128 + N when signal N ended it).
    pub exit_status: i32,
    /// Unix seconds it started and ended (0: not known).
    pub start_time: i64,
    /// As above.
    pub end_time: i64,
    /// Its `h_rt` request in seconds, from its category (0: none).
    pub h_rt: u64,
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The cluster queues' names.
pub async fn queue_names(host: &dyn Host) -> Result<Vec<String>> {
    let out = host.run("qconf", &args(&["-sql"]), None).await?;
    Ok(out.split_whitespace().map(str::to_string).collect())
}

/// The settings of `queues`.
pub async fn queue_confs(host: &dyn Host, queues: &[String]) -> Result<Vec<QueueConf>> {
    if queues.is_empty() {
        return Ok(Vec::new());
    }
    let out = host
        .run("qconf", &args(&["-sq", &queues.join(",")]), None)
        .await?;
    Ok(parse_queue_confs(&out))
}

/// Parse `qconf -sq` of one or more queues (each block starts at `qname`).
pub fn parse_queue_confs(out: &str) -> Vec<QueueConf> {
    let mut confs: Vec<QueueConf> = Vec::new();
    for line in out.lines() {
        let Some((key, value)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let value = value.trim();
        match key {
            "qname" => confs.push(QueueConf {
                name: value.to_string(),
                h_rt: 0,
            }),
            // `INFINITY,[host=1:00:00]`: the queue's own value comes first.
            "h_rt" => {
                if let Some(c) = confs.last_mut() {
                    c.h_rt = parse_time(value.split(',').next().unwrap_or(value));
                }
            }
            _ => {}
        }
    }
    confs
}

/// A Grid Engine time (`INFINITY`, `3600`, `1:00:00`), in seconds; 0 for none.
pub fn parse_time(text: &str) -> u64 {
    if text.eq_ignore_ascii_case("INFINITY") {
        return 0;
    }
    text.split(':')
        .map(|p| p.trim().parse::<u64>().unwrap_or(0))
        .fold(0, |acc, p| acc * 60 + p)
}

/// A Grid Engine memory size (`23.5G`, `512M`, `1024`), in bytes.
pub fn parse_memory(text: &str) -> u64 {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let scale: u64 = match unit {
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => 1,
    };
    number
        .parse::<f64>()
        .map_or(0, |n| (n * scale as f64) as u64)
}

/// The execution hosts and their queue instances.
pub async fn exec_hosts(host: &dyn Host) -> Result<Vec<ExecHost>> {
    let out = host.run("qhost", &args(&["-q", "-xml"]), None).await?;
    parse_qhost(&out)
}

fn xml<'a>(out: &'a str, command: &str) -> Result<roxmltree::Document<'a>> {
    roxmltree::Document::parse(out)
        .map_err(|e| GateError::Internal(format!("{command} printed XML it cannot read: {e}")))
}

/// Parse `qhost -q -xml`.
pub fn parse_qhost(out: &str) -> Result<Vec<ExecHost>> {
    let doc = xml(out, "qhost -q -xml")?;
    let mut hosts = Vec::new();
    for h in doc.descendants().filter(|n| n.has_tag_name("host")) {
        let name = h.attribute("name").unwrap_or("").to_string();
        if name == "global" {
            continue;
        }
        let value = |key: &str| {
            h.children()
                .find(|n| n.has_tag_name("hostvalue") && n.attribute("name") == Some(key))
                .and_then(|n| n.text())
                .unwrap_or("")
        };
        let memory_bytes = parse_memory(value("mem_total"));
        let queues = h
            .children()
            .filter(|n| n.has_tag_name("queue"))
            .map(|q| {
                let value = |key: &str| {
                    q.children()
                        .find(|n| n.has_tag_name("queuevalue") && n.attribute("name") == Some(key))
                        .and_then(|n| n.text())
                        .unwrap_or("")
                        .to_string()
                };
                (
                    q.attribute("name").unwrap_or("").to_string(),
                    value("slots").parse().unwrap_or(0),
                    value("state_string"),
                )
            })
            .collect();
        hosts.push(ExecHost {
            name,
            memory_bytes,
            queues,
        });
    }
    Ok(hosts)
}

/// Submit a job script (on stdin); its job id.
pub async fn qsub(host: &dyn Host, options: &[String], script: &str) -> Result<u64> {
    let out = host
        .run(
            "qsub",
            &[&["-terse".to_string()], options].concat(),
            Some(script.as_bytes()),
        )
        .await
        .map_err(refusal)?;
    // `-terse` prints `id` (or `id.1-10:1` for an array).
    out.trim()
        .split('.')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| GateError::Internal(format!("qsub printed no job id: {out:?}")))
}

/// qsub refusing a job for what it asks is the job's fault, not the
/// cluster's: say so as INVALID_ARGUMENT.
fn refusal(e: GateError) -> GateError {
    match e {
        GateError::Unavailable(m)
            if m.contains("Unable to run job")
                && (m.contains("does not exist")
                    || m.contains("unknown resource")
                    || m.contains("no suitable queues")
                    || m.contains("denied")) =>
        {
            GateError::invalid(
                "task.resources",
                format!("Grid Engine refused the job: {m}"),
            )
        }
        other => other,
    }
}

/// Every job `qstat` lists, of every user.
pub async fn qstat(host: &dyn Host) -> Result<Vec<Listed>> {
    let out = host.run("qstat", &args(&["-xml", "-u", "*"]), None).await?;
    parse_qstat(&out)
}

/// Parse `qstat -xml`.
pub fn parse_qstat(out: &str) -> Result<Vec<Listed>> {
    let doc = xml(out, "qstat -xml")?;
    Ok(doc
        .descendants()
        .filter(|n| n.has_tag_name("job_list"))
        .filter_map(|job| {
            let text = |key: &str| {
                job.children()
                    .find(|n| n.has_tag_name(key))
                    .and_then(|n| n.text())
                    .unwrap_or("")
            };
            Some(Listed {
                id: text("JB_job_number").parse().ok()?,
                name: text("JB_name").to_string(),
                state: text("state").to_string(),
                start_time: utc_seconds(text("JAT_start_time"), "%Y-%m-%dT%H:%M:%S"),
            })
        })
        .collect())
}

/// Why each of `ids` waits or failed, from `qstat -j` (`scheduling info`,
/// or `error reason` of a job in error): the first line, by job id.
pub async fn why(host: &dyn Host, ids: &[u64]) -> Result<BTreeMap<u64, String>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    match host
        .run("qstat", &args(&["-j", &list.join(",")]), None)
        .await
    {
        Ok(out) => Ok(parse_why(&out)),
        // They ended in between.
        Err(GateError::Unavailable(m)) if m.contains("do not exist") => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// Parse `qstat -j` of one or more jobs for [`why`].
pub fn parse_why(out: &str) -> BTreeMap<u64, String> {
    let mut reasons = BTreeMap::new();
    let mut job = None;
    for line in out.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "job_number" => job = value.parse::<u64>().ok(),
            // `error reason    1:          10/01/2026 ... can't chdir ...`
            k if k.starts_with("error reason") => {
                if let Some(id) = job {
                    let text = value.split_once("]:").map_or(value, |(_, t)| t).trim();
                    reasons.insert(id, text.to_string());
                }
            }
            "scheduling info" => {
                if let Some(id) = job {
                    reasons.entry(id).or_insert_with(|| value.to_string());
                }
            }
            _ => {}
        }
    }
    reasons
}

/// What `qacct -j` prints of the job with this id or name; `None` when
/// the accounting file does not have it (yet).
pub async fn qacct(host: &dyn Host, job: &str) -> Result<Option<String>> {
    match host.run("qacct", &args(&["-j", job]), None).await {
        Ok(out) => Ok(Some(out)),
        Err(GateError::Unavailable(m)) if m.contains("not found") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether the complex `name` is consumable per slot (`YES` in `qconf
/// -sc`; `JOB` is per job).
pub async fn per_slot(host: &dyn Host, name: &str) -> Result<bool> {
    let out = host.run("qconf", &args(&["-sc"]), None).await?;
    Ok(out.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 5 && (f[0] == name || f[1] == name) && f[5] == "YES"
    }))
}

/// The job number of the last record in `qacct -j` output.
pub fn qacct_job_number(out: &str) -> Option<u64> {
    out.lines()
        .rev()
        .find_map(|l| l.strip_prefix("jobnumber"))
        .and_then(|v| v.trim().parse().ok())
}

/// Parse the last record of `qacct -j` output (records start with a line of `=`).
pub fn parse_qacct(out: &str) -> Option<Accounted> {
    let record = out.rsplit("=====").next()?;
    let field = |key: &str| {
        record.lines().find_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            (k == key).then(|| v.trim())
        })
    };
    let (failed, failed_text) = match field("failed")?.split_once(':') {
        Some((code, text)) => (code.trim(), text.trim()),
        None => (field("failed")?, ""),
    };
    let exit_status = field("exit_status")?;
    let exit_status = exit_status.split_whitespace().next().unwrap_or("0");
    let ctime = "%a %b %e %H:%M:%S %Y";
    let h_rt = field("category")
        .and_then(|c| c.split("h_rt=").nth(1))
        .map_or(0, |v| parse_time(v.split([',', ' ']).next().unwrap_or(v)));
    Some(Accounted {
        failed: failed.parse().ok()?,
        failed_text: failed_text.to_string(),
        exit_status: exit_status.parse().ok()?,
        start_time: field("start_time").map_or(0, |t| utc_seconds(t, ctime)),
        end_time: field("end_time").map_or(0, |t| utc_seconds(t, ctime)),
        h_rt,
    })
}

/// `text` in `format`, a UTC time, as Unix seconds; 0 when it is not one.
fn utc_seconds(text: &str, format: &str) -> i64 {
    DateTime::strptime(format, text.trim())
        .ok()
        .and_then(|t| t.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map_or(0, |z| z.timestamp().as_second())
}

/// Delete a job (fine when it already ended).
pub async fn qdel(host: &dyn Host, id: u64) -> Result<()> {
    match host.run("qdel", &[id.to_string()], None).await {
        Ok(_) => Ok(()),
        Err(GateError::Unavailable(m)) if m.contains("does not exist") => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_queues_hosts_and_sizes() {
        let confs = parse_queue_confs(
            "qname                 all.q\nhostlist              vm\nh_rt                  INFINITY\n\n\
             qname                 short\nh_rt                  0:2:0,[vm=1:00:00]\n",
        );
        assert_eq!(confs.len(), 2);
        assert_eq!((confs[0].name.as_str(), confs[0].h_rt), ("all.q", 0));
        assert_eq!((confs[1].name.as_str(), confs[1].h_rt), ("short", 120));
        assert_eq!(parse_time("3600"), 3600);
        assert_eq!(parse_memory("23.5G"), (23.5 * (1u64 << 30) as f64) as u64);
        assert_eq!(parse_memory("512M"), 512 << 20);
        assert_eq!(parse_memory("-"), 0);
        let hosts = parse_qhost(
            "<?xml version='1.0'?><qhost xmlns:xsd=\"x\">\
             <host name='global'><hostvalue name='mem_total'>-</hostvalue></host>\
             <host name='vm'><hostvalue name='num_proc'>2</hostvalue>\
             <hostvalue name='mem_total'>2.0G</hostvalue>\
             <queue name='all.q'><queuevalue qname='all.q' name='slots'>2</queuevalue>\
             <queuevalue qname='all.q' name='state_string'>d</queuevalue></queue></host></qhost>",
        )
        .unwrap();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].memory_bytes, 2 << 30);
        assert_eq!(hosts[0].queues, vec![("all.q".into(), 2, "d".into())]);
    }

    #[test]
    fn reads_qstat_and_why_jobs_wait() {
        let jobs = parse_qstat(
            "<?xml version='1.0'?><job_info><queue_info><job_list state=\"running\">\
             <JB_job_number>1</JB_job_number><JB_name>gantry-a1</JB_name><state>r</state>\
             <JAT_start_time>2026-12-05T21:10:40</JAT_start_time></job_list></queue_info>\
             <job_info><job_list state=\"pending\"><JB_job_number>2</JB_job_number>\
             <JB_name>x</JB_name><state>hqw</state></job_list></job_info></job_info>",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!((jobs[0].id, jobs[0].state.as_str()), (1, "r"));
        assert_eq!(jobs[0].start_time, 1_796_505_040);
        assert_eq!((jobs[1].name.as_str(), jobs[1].start_time), ("x", 0));
        let why = parse_why(
            "job_number:                 2\nscheduling info:            queue instance \"all.q@vm\" dropped because it is full\n                            All queues dropped because of overload or full\n\
             ==============\njob_number:                 3\nerror reason    1:          12/05/2026 21:10:40 [0:123]: error: can't chdir to /nope: No such file or directory\nscheduling info:            (Collecting of scheduler job information is turned off)\n",
        );
        assert_eq!(
            why[&2],
            "queue instance \"all.q@vm\" dropped because it is full"
        );
        assert!(why[&3].starts_with("error: "), "{}", why[&3]);
        assert!(why[&3].contains("can't chdir to /nope"), "{}", why[&3]);
    }

    #[test]
    fn reads_the_last_accounting_record() {
        let out = "==============================================================\n\
                   jobnumber    4\nfailed       0    \nexit_status  0\n\
                   ==============================================================\n\
                   qname        all.q\njobnumber    4\nstart_time   Sat Dec  5 21:11:00 2026\n\
                   end_time     Sat Dec  5 21:11:03 2026\ncategory     -l h_rt=2\n\
                   failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit\n\
                   exit_status  137                  (Killed)\n";
        let a = parse_qacct(out).unwrap();
        assert_eq!((a.failed, a.exit_status, a.h_rt), (37, 137, 2));
        assert_eq!(
            a.failed_text,
            "qmaster enforced h_rt, h_cpu, or h_vmem limit"
        );
        assert_eq!(a.end_time - a.start_time, 3);
        assert_eq!(a.start_time, 1_796_505_060);
        assert_eq!(qacct_job_number(out), Some(4));
    }
}
