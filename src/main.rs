fn main() {
    println!("hub2mqtt {}", hub2mqtt::VERSION);
}
