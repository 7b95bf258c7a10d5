//! `.xlsx` rows, read with calamine: the package's declared sizes are checked first (a ZIP bomb
//! is refused before anything is unpacked; the `zip` crate stops any part at its declared
//! size), then the sheet is read one cell at a time (`worksheet_cells_reader`), so a sheet is
//! never held whole; calamine reads the shared-string table, the styles and the workbook whole
//! when it opens the package, which `ingest.max_xlsx_unpacked_mb` bounds.
//!
//! Which sheet: the one named (even hidden: naming it is asking for it), else the first visible
//! worksheet. Formula cells give their cached value (what Excel last calculated). Merged
//! regions: calamine gives the value to the top-left cell only; here it is given to every row
//! of the region in its first column (a vertical merge of 处罚机关 over three penalties means
//! the same authority for the three), the region's other columns read empty.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Seek};

use calamine::{DataRef, Reader, SheetType, SheetVisible, Xlsx};

use super::{Bounds, Cell, FileError, RawRow};

/// Read every row of the chosen sheet; returns the sheet's name. `on_row` also gets whether the
/// workbook counts dates from 1904.
pub(super) fn rows(
    mut file: File,
    sheet: Option<&str>,
    bounds: Bounds,
    on_row: &mut dyn FnMut(RawRow, bool) -> Result<(), FileError>,
) -> Result<String, FileError> {
    check_package(&mut file, bounds)?;
    file.rewind().map_err(|e| FileError::Io(e.to_string()))?;
    let mut book: Xlsx<BufReader<File>> = Xlsx::new(BufReader::with_capacity(64 * 1024, file))
        .map_err(|e| FileError::Malformed(format!("the .xlsx cannot be read: {e}")))?;
    let sheets = book.sheets_metadata().to_vec();
    let name = match sheet {
        Some(wanted) => sheets
            .iter()
            .find(|s| s.name == wanted && s.typ == SheetType::WorkSheet)
            .map(|s| s.name.clone())
            .ok_or_else(|| FileError::SheetNotFound {
                name: wanted.to_string(),
                sheets: sheets
                    .iter()
                    .filter(|s| s.typ == SheetType::WorkSheet)
                    .map(|s| s.name.clone())
                    .collect(),
            })?,
        None => sheets
            .iter()
            .find(|s| s.typ == SheetType::WorkSheet && s.visible == SheetVisible::Visible)
            .map(|s| s.name.clone())
            .ok_or_else(|| {
                FileError::Malformed(
                    "the workbook has no visible worksheet: name the sheet with ?sheet=NAME".into(),
                )
            })?,
    };
    let is_1904 = book.has_1904_epoch();
    let merges = book
        .merge_cells_by_sheet_name(&name)
        .map_err(|e| FileError::Malformed(format!("the sheet {name:?} cannot be read: {e}")))?;
    // The first column of each merged region spanning several rows: (first row, last row, column).
    let vertical: Vec<(u32, u32, u32)> = merges
        .iter()
        .filter(|d| d.end.0 > d.start.0)
        .map(|d| (d.start.0, d.end.0, d.start.1))
        .collect();
    // The value of a region's top-left cell while rows of the region are read.
    let mut carried: BTreeMap<(u32, u32), Cell> = BTreeMap::new();
    let mut cells = book
        .worksheet_cells_reader(&name)
        .map_err(|e| FileError::Malformed(format!("the sheet {name:?} cannot be read: {e}")))?;
    let mut current: Option<(u32, Vec<(usize, Cell)>)> = None;
    let mut emit = |row: u32,
                    mut found: Vec<(usize, Cell)>,
                    carried: &mut BTreeMap<(u32, u32), Cell>|
     -> Result<(), FileError> {
        for &(first, last, col) in &vertical {
            if row == first {
                if let Some((_, c)) = found.iter().find(|(p, _)| *p == col as usize) {
                    carried.insert((first, col), c.clone());
                }
            } else if row > first && row <= last {
                if let Some(value) = carried.get(&(first, col)) {
                    found.retain(|(p, c)| *p != col as usize || !c.is_blank());
                    if !found.iter().any(|(p, _)| *p == col as usize) {
                        found.push((col as usize, value.clone()));
                    }
                }
                if row == last {
                    carried.remove(&(first, col));
                }
            }
        }
        on_row(
            RawRow {
                number: row as usize + 1,
                cells: found,
            },
            is_1904,
        )
    };
    loop {
        let next = cells
            .next_cell()
            .map_err(|e| FileError::Malformed(format!("the sheet {name:?} cannot be read: {e}")))?;
        let Some(cell) = next else { break };
        let (row, col) = cell.get_position();
        let value = owned(cell.get_value());
        match current.as_mut() {
            Some((r, found)) if *r == row => {
                if let Some(v) = value {
                    found.push((col as usize, v));
                }
            }
            _ => {
                if let Some((r, found)) = current.take() {
                    emit(r, found, &mut carried)?;
                }
                current = Some((row, value.map(|v| (col as usize, v)).into_iter().collect()));
            }
        }
    }
    if let Some((r, found)) = current.take() {
        emit(r, found, &mut carried)?;
    }
    Ok(name)
}

/// A cell's value, owned; `None` for an empty cell.
fn owned(value: &DataRef<'_>) -> Option<Cell> {
    Some(match value {
        DataRef::Empty => return None,
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => {
            Cell::Text(s.clone())
        }
        DataRef::SharedString(s) => Cell::Text(s.to_string()),
        DataRef::Int(i) => Cell::Int(*i),
        DataRef::Float(f) => Cell::Number(*f),
        DataRef::Bool(b) => Cell::Bool(*b),
        DataRef::DateTime(d) if d.is_datetime() => Cell::Date(d.as_f64()),
        DataRef::DateTime(d) => Cell::Number(d.as_f64()),
        DataRef::Error(e) => Cell::Error(e.to_string()),
    })
}

/// Refuse a package whose parts declare more than the bound unpacked, before calamine unpacks
/// any of them.
fn check_package(file: &mut File, bounds: Bounds) -> Result<(), FileError> {
    let mut zip = zip::ZipArchive::new(&mut *file).map_err(|e| {
        FileError::Malformed(format!(
            "not an .xlsx file (an .xlsx is a ZIP package; this one cannot be opened: {e}); an old .xls must be saved as .xlsx"
        ))
    })?;
    let mut total: u64 = 0;
    for i in 0..zip.len() {
        let part = zip
            .by_index_raw(i)
            .map_err(|e| FileError::Malformed(format!("the .xlsx package is damaged: {e}")))?;
        total = total.saturating_add(part.size());
    }
    if total > bounds.max_unpacked_bytes {
        return Err(FileError::Limit(format!(
            "the .xlsx unpacks to {} MiB, more than {} MiB (ingest.max_xlsx_unpacked_mb): split it, or send it as CSV",
            total.div_ceil(1024 * 1024),
            bounds.max_unpacked_bytes / (1024 * 1024)
        )));
    }
    Ok(())
}
