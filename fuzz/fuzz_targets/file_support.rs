//! Shared by the file targets: arbitrary bytes as a received file (written to a temporary file
//! and unlinked at once, as `POST /v1/files` spools a body), read row by row through the
//! `mi-penalties` mapping, every cell read as the mapping's rules read it. Nothing may panic.

static SET: std::sync::OnceLock<Option<credit_gateway::mapping::MappingSet>> =
    std::sync::OnceLock::new();

pub fn read_as(data: &[u8], kind: credit_gateway::files::FileKind) {
    let Some(set) = SET.get_or_init(|| credit_gateway::mapping::MappingSet::builtin().ok()) else {
        return;
    };
    let Some(mapping) = set.get("mi-penalties") else {
        return;
    };
    let path = std::env::temp_dir().join(format!(
        "credit-gateway-fuzz-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let file = std::fs::File::open(&path);
    let _ = std::fs::remove_file(&path);
    let Ok(file) = file else { return };
    let bounds = credit_gateway::files::Bounds {
        max_rows: 10_000,
        max_unpacked_bytes: 16 * 1024 * 1024,
    };
    let paths = mapping.source_paths();
    let _ = credit_gateway::files::read(file, kind, None, mapping, bounds, |row| {
        for p in &paths {
            let _ = row.read(p);
            let _ = row.column_of(p);
        }
        Ok(())
    });
}
