//! Reader for the UJIIndoorLoc CSV layout (Torres-Sospedra et al., IPIN 2014).
//!
//! Every column that is not a known label column is a signal column whose name is the
//! emitter id; the value 100 means "not detected". Columns are mapped by name, so files
//! with other column orders or other access points read the same way.

use std::io::BufRead;

use super::fingerprint::{Dataset, Sample};

/// Label columns of the layout; everything else is a signal column.
const LABELS: [&str; 9] = [
    "LONGITUDE",
    "LATITUDE",
    "FLOOR",
    "BUILDINGID",
    "SPACEID",
    "RELATIVEPOSITION",
    "USERID",
    "PHONEID",
    "TIMESTAMP",
];

/// RSSI value the layout uses for "access point not detected".
pub const NOT_DETECTED: f32 = 100.0;

#[derive(Debug, thiserror::Error)]
pub enum UjiError {
    #[error("line {line}: read error: {source}")]
    Io {
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("line 1: the file is empty (no header)")]
    Empty,
    #[error("line 1, column {column}: required column is missing from the header")]
    MissingColumn { column: String },
    #[error("line 1, column {column}: duplicate column name")]
    DuplicateColumn { column: String },
    #[error("line {line}, column {column}: cannot parse {value:?} as a number")]
    BadValue {
        line: usize,
        column: String,
        value: String,
    },
    #[error("line {line}, column {column}: value missing (row has {found} fields, header has {expected})")]
    MissingField {
        line: usize,
        column: String,
        found: usize,
        expected: usize,
    },
    #[error("line {line}, column {column}: row has {found} fields, header has {expected}")]
    ExtraField {
        line: usize,
        column: String,
        found: usize,
        expected: usize,
    },
}

#[derive(Clone, Copy)]
enum Col {
    Signal(u32),
    X,
    Y,
    Floor,
    Building,
    Ignored,
}

fn clean(name: &str) -> &str {
    name.trim().trim_matches('"').trim()
}

/// Read a UJIIndoorLoc-style CSV file into a sparse [`Dataset`].
///
/// LONGITUDE and LATITUDE are required; FLOOR and BUILDINGID default to 0 when absent.
/// Empty lines are skipped. Errors name the 1-based line and the column.
pub fn read_uji(mut reader: impl BufRead) -> Result<Dataset, UjiError> {
    let mut buf = String::new();
    let mut line_no = 1usize;
    let n = reader
        .read_line(&mut buf)
        .map_err(|source| UjiError::Io { line: 1, source })?;
    if n == 0 || buf.trim().is_empty() {
        return Err(UjiError::Empty);
    }
    let header: Vec<String> = buf
        .trim_end_matches(['\r', '\n'])
        .trim_start_matches('\u{feff}')
        .split(',')
        .map(|s| clean(s).to_string())
        .collect();
    let mut data = Dataset::new();
    let mut cols = Vec::with_capacity(header.len());
    let mut seen = std::collections::HashSet::new();
    for name in &header {
        if !seen.insert(name.as_str()) {
            return Err(UjiError::DuplicateColumn {
                column: name.clone(),
            });
        }
        let upper = name.to_ascii_uppercase();
        let col = match upper.as_str() {
            "LONGITUDE" => Col::X,
            "LATITUDE" => Col::Y,
            "FLOOR" => Col::Floor,
            "BUILDINGID" => Col::Building,
            u if LABELS.contains(&u) => Col::Ignored,
            _ => Col::Signal(data.emitter_id(name)),
        };
        cols.push(col);
    }
    for required in ["LONGITUDE", "LATITUDE"] {
        if !header.iter().any(|h| h.eq_ignore_ascii_case(required)) {
            return Err(UjiError::MissingColumn {
                column: required.to_string(),
            });
        }
    }

    loop {
        buf.clear();
        line_no += 1;
        let n = reader.read_line(&mut buf).map_err(|source| UjiError::Io {
            line: line_no,
            source,
        })?;
        if n == 0 {
            break;
        }
        let line = buf.trim_end_matches(['\r', '\n']);
        if line.trim().is_empty() {
            continue;
        }
        let mut sample = Sample::default();
        let mut found = 0usize;
        for (i, field) in line.split(',').enumerate() {
            found = i + 1;
            let Some(col) = cols.get(i) else {
                return Err(UjiError::ExtraField {
                    line: line_no,
                    column: format!("#{} (after {})", i + 1, header.last().map_or("", |s| s)),
                    found: line.split(',').count(),
                    expected: header.len(),
                });
            };
            if matches!(col, Col::Ignored) {
                continue;
            }
            let field = field.trim().trim_matches('"');
            // Fast path: most signal cells are the "not detected" marker.
            if matches!(col, Col::Signal(_)) && field == "100" {
                continue;
            }
            let value: f64 = field.parse().map_err(|_| UjiError::BadValue {
                line: line_no,
                column: header[i].clone(),
                value: field.to_string(),
            })?;
            if !value.is_finite() {
                return Err(UjiError::BadValue {
                    line: line_no,
                    column: header[i].clone(),
                    value: field.to_string(),
                });
            }
            match *col {
                Col::Signal(id) => {
                    if value as f32 != NOT_DETECTED {
                        sample.readings.push((id, value as f32));
                    }
                }
                Col::X => sample.x = value,
                Col::Y => sample.y = value,
                Col::Floor => sample.floor = value as i32,
                Col::Building => sample.building = value as i32,
                Col::Ignored => {}
            }
        }
        if found < header.len() {
            return Err(UjiError::MissingField {
                line: line_no,
                column: header[found].clone(),
                found,
                expected: header.len(),
            });
        }
        data.push_sample(sample);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sparse_and_maps_by_name() {
        let csv = "WAP002,LONGITUDE,WAP001,LATITUDE,FLOOR,BUILDINGID,EXTRA\n\
                   -50,1.5,100,2.5,3,1,7\n\
                   100,0,-80,0,0,0,0\n";
        let d = read_uji(csv.as_bytes()).unwrap();
        assert_eq!(d.emitters, vec!["WAP002", "WAP001", "EXTRA"]);
        assert_eq!(d.samples.len(), 2);
        let s = &d.samples[0];
        assert_eq!((s.x, s.y, s.floor, s.building), (1.5, 2.5, 3, 1));
        let named: Vec<_> = s
            .readings
            .iter()
            .map(|&(id, r)| (d.emitters[id as usize].as_str(), r))
            .collect();
        assert_eq!(named, vec![("WAP002", -50.0), ("EXTRA", 7.0)]);
        assert_eq!(d.samples[1].readings.len(), 2);
    }

    #[test]
    fn floor_and_building_default_to_zero() {
        let csv = "A,LATITUDE,LONGITUDE\n-40,1,2\n";
        let d = read_uji(csv.as_bytes()).unwrap();
        assert_eq!((d.samples[0].floor, d.samples[0].building), (0, 0));
        assert_eq!((d.samples[0].x, d.samples[0].y), (2.0, 1.0));
    }

    #[test]
    fn errors_name_line_and_column() {
        let csv = "WAP001,WAP002,LONGITUDE,LATITUDE\n-40,100,1,2\n-40,abc,1,2\n";
        let e = read_uji(csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("WAP002"), "{e}");

        let csv = "WAP001,WAP002,LONGITUDE,LATITUDE\n-40,100,1\n";
        let e = read_uji(csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("LATITUDE"), "{e}");

        let csv = "WAP001,LONGITUDE,LATITUDE\n-40,1,2,5\n";
        let e = read_uji(csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("column"), "{e}");

        let csv = "WAP001,LONGITUDE\n-40,1\n";
        let e = read_uji(csv.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("LATITUDE"), "{e}");

        assert!(matches!(read_uji("".as_bytes()), Err(UjiError::Empty)));
    }

    #[test]
    fn crlf_and_blank_lines() {
        let csv = "WAP001,LONGITUDE,LATITUDE\r\n-40,1,2\r\n\r\n-41,3,4\r\n";
        let d = read_uji(csv.as_bytes()).unwrap();
        assert_eq!(d.samples.len(), 2);
        assert_eq!(d.samples[1].readings, vec![(0, -41.0)]);
    }
}
