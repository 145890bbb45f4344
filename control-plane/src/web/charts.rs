//! Bar charts as inline SVG, drawn on the server: no script, no third-party library,
//! readable by screen readers (a title, and each bar's value as its tooltip).

use std::fmt::Write;

use crate::pages::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;
const AXIS: f64 = 18.0;
const MAX_BAR: f64 = 48.0;

/// One bar: its label and value, and the value as people read it.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub shown: String,
}

/// A bar chart of `bars` (in order) titled `title`. Empty data gives a sentence.
pub fn bars(title: &str, bars: &[Bar]) -> String {
    if bars.is_empty() || bars.iter().all(|b| b.value <= 0.0) {
        return format!("<p class=\"muted\">{}: no data yet.</p>", escape(title));
    }
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let slot = WIDTH / bars.len() as f64;
    // Thin bars stay readable; a lone bar does not fill the chart.
    let bar_width = (slot * 0.8).clamp(1.0, MAX_BAR);
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {}\" role=\"img\" aria-label=\"{}\"><title>{}</title>",
        HEIGHT + AXIS,
        escape(title),
        escape(title)
    );
    // Label every bar when they fit, else about ten of them.
    let label_every = (bars.len() / 10).max(1);
    for (i, bar) in bars.iter().enumerate() {
        let h = if max > 0.0 {
            (bar.value / max) * (HEIGHT - 4.0)
        } else {
            0.0
        };
        let x = i as f64 * slot + (slot - bar_width) / 2.0;
        let _ = write!(
            svg,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_width:.1}\" height=\"{h:.1}\"><title>{}: {}</title></rect>",
            HEIGHT - h,
            escape(&bar.label),
            escape(&bar.shown)
        );
        if i % label_every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                x + bar_width / 2.0,
                HEIGHT + AXIS - 4.0,
                escape(&short(&bar.label))
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn short(label: &str) -> String {
    if label.chars().count() <= 18 {
        label.to_string()
    } else {
        let mut s: String = label.chars().take(17).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_bar_per_value_scaled_to_the_largest() {
        let svg = bars(
            "Cost <by> day",
            &[
                Bar {
                    label: "a".into(),
                    value: 1.0,
                    shown: "$1".into(),
                },
                Bar {
                    label: "b".into(),
                    value: 4.0,
                    shown: "$4".into(),
                },
            ],
        );
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("Cost &lt;by&gt; day"));
        assert!(svg.contains("height=\"156.0\""), "{svg}");
        assert!(svg.contains("<title>b: $4</title>"));
        assert!(
            !svg.contains("style="),
            "inline styles are blocked by the CSP"
        );
    }

    #[test]
    fn no_data_is_said_not_drawn() {
        assert!(bars("Cost", &[]).contains("no data yet"));
    }
}
