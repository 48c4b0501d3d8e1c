//! Starts a throwaway cluster, prints its URL, waits for Enter or 2 seconds, stops it.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = tenancy_devdb::DevDatabase::throwaway()?;
    println!("{}", db.url());
    Ok(())
}
