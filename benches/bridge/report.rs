//! The figures of one bench run: rows of a Markdown table, printed and written to `target/bench/`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub metric: String,
    pub ours: String,
    pub baseline: String,
    pub target: String,
    /// `ok`, `MISSED`, or `-` when the row has no target.
    pub verdict: String,
    pub load: f64,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &mut self,
        scenario: &str,
        metric: &str,
        ours: String,
        baseline: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
        load: f64,
    ) {
        let verdict = match met {
            Some(true) => "ok",
            Some(false) => "MISSED",
            None => "-",
        };
        let row = Row {
            scenario: scenario.into(),
            metric: metric.into(),
            ours,
            baseline: baseline.into(),
            target: target.into(),
            verdict: verdict.into(),
            load,
        };
        println!(
            "  {:<22} {:<44} {:>16}  base {:>14}  target {:<16} {:<6} load {:.2}",
            row.scenario, row.metric, row.ours, row.baseline, row.target, row.verdict, row.load
        );
        self.rows.push(row);
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("  note: {text}");
        self.notes.push(text);
    }

    pub fn markdown(&self, header: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{header}\n");
        let _ = writeln!(s, "| scenario | metric | ours | baseline | target | verdict | load (1 min) |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {:.2} |",
                r.scenario, r.metric, r.ours, r.baseline, r.target, r.verdict, r.load
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }

    /// Writes `target/bench/report-<unix time>.md` and `target/bench/latest.md`; returns the first path.
    pub fn write(&self, header: &str) -> std::io::Result<std::path::PathBuf> {
        let dir = super::support::report_dir();
        std::fs::create_dir_all(&dir)?;
        let stamp = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let path = dir.join(format!("report-{stamp}.md"));
        let text = self.markdown(header);
        std::fs::write(&path, &text)?;
        std::fs::write(dir.join("latest.md"), &text)?;
        Ok(path)
    }
}
