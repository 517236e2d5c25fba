// The release build's linker (packaging/link-ordered.sh) reads packaging/launch-order.txt,
// a file cargo knows nothing of: this makes a change to it relink the binary.
fn main() {
    println!("cargo:rerun-if-changed=packaging/launch-order.txt");
}
